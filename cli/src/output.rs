//! Standard output and standard error, written without panicking.
//!
//! `println!` and `eprintln!` panic when the stream is a pipe whose reader has gone
//! (`credflow get /api/v2/users | head -1`): Rust ignores `SIGPIPE`, so the write fails with
//! `EPIPE`, and the panic ends the process with exit code 101 and a panic message. Every write of
//! the command goes through here instead ([`outln!`], [`errln!`], [`stdout_bytes`], the log
//! writer), and:
//!
//! - a write to a closed pipe, on either stream, ends credflow at once, quietly, with exit code
//!   [`BROKEN_PIPE`] (141: what a shell reports for a process that `SIGPIPE` ended, as it would
//!   end a C filter): the reader has gone, so there is nobody left to tell;
//! - any other failure to write standard output (a full disk) ends credflow with exit code 1
//!   and says so on standard error: output that did not arrive is never reported as a success;
//! - any other failure to write standard error is ignored: there is nowhere left to report it.
//!
//! The one exception is the error message of a failed command, written last by `main`: its exit
//! code says more than 141 and is kept.
//!
//! Ending the process from where the write failed, rather than returning an error up every
//! caller, is what `SIGPIPE` does to other programs. Destructors do not run, so the secrets in
//! memory are not wiped by theirs; the process is gone, and the operating system clears its pages
//! before it hands them to anyone else.

use std::fmt;
use std::io::{self, Write};

/// The exit code after a write to a closed pipe.
pub(crate) const BROKEN_PIPE: u8 = 141;

/// Writes to standard output and flushes, or ends the process (see the module docs).
pub(crate) fn stdout_bytes(bytes: &[u8]) {
    write_stdout(|out| out.write_all(bytes));
}

/// Server text as a human reads it: every control character but a tab, a line feed and a
/// carriage return before a line feed becomes U+FFFD, as does each byte that is not UTF-8, so
/// that nothing a server sends (ESC or CSI sequences, BEL, a lone carriage return) can move the
/// cursor, clear the screen, set the title or the clipboard, or write over a line already shown.
pub(crate) fn printable(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let kept = match c {
            '\t' | '\n' => true,
            '\r' => chars.peek() == Some(&'\n'),
            c => !c.is_control(),
        };
        out.push(if kept { c } else { char::REPLACEMENT_CHARACTER });
    }
    out
}

/// [`printable`] for text that arrives in pieces (a body streamed to a terminal): each piece
/// printed as soon as it can be, a carriage return or the start of a UTF-8 sequence at its end
/// kept until the next piece says what it is. The pieces' output, joined, is `printable` of
/// the whole; at most three bytes are kept.
#[derive(Default)]
pub(crate) struct PrintableStream {
    kept: Vec<u8>,
}

impl PrintableStream {
    /// What can be printed of everything pushed so far.
    pub(crate) fn push(&mut self, piece: &[u8]) -> String {
        self.kept.extend_from_slice(piece);
        let ready = self.kept.len().saturating_sub(open_tail(&self.kept));
        let out = printable(self.kept.get(..ready).unwrap_or_default());
        self.kept.drain(..ready);
        out
    }

    /// What is left, at the end.
    pub(crate) fn finish(self) -> String {
        printable(&self.kept)
    }
}

/// How many bytes at the end of `bytes` what follows may still change: a carriage return (a
/// line break's first half) or the start of a UTF-8 sequence not yet complete.
fn open_tail(bytes: &[u8]) -> usize {
    if bytes.last() == Some(&b'\r') {
        return 1;
    }
    (bytes.len().saturating_sub(3)..bytes.len())
        .find(|&start| {
            std::str::from_utf8(bytes.get(start..).unwrap_or_default())
                .is_err_and(|e| e.valid_up_to() == 0 && e.error_len().is_none())
        })
        .map_or(0, |start| bytes.len() - start)
}

/// [`stdout_bytes`] of formatted text (written as it is formatted: a token printed here is
/// never copied into a temporary string).
pub(crate) fn stdout_fmt(args: fmt::Arguments<'_>) {
    write_stdout(|out| out.write_fmt(args));
}

fn write_stdout(write: impl FnOnce(&mut io::StdoutLock<'static>) -> io::Result<()>) {
    let mut out = io::stdout().lock();
    // Flushed at once: an error left in the buffer would surface only at exit, and be ignored.
    let result = write(&mut out).and_then(|()| out.flush());
    drop(out);
    if let Err(e) = result {
        exit_if_broken_pipe(&e);
        stderr_fmt(format_args!("credflow: error: cannot write to standard output: {e}\n"));
        std::process::exit(1);
    }
}

/// Writes formatted text to standard error; a closed pipe ends the process (see the module
/// docs).
pub(crate) fn stderr_fmt(args: fmt::Arguments<'_>) {
    let mut err = io::stderr().lock();
    if let Err(e) = err.write_fmt(args).and_then(|()| err.flush()) {
        exit_if_broken_pipe(&e);
    }
}

/// Ends the process quietly with [`BROKEN_PIPE`] if `e` is a write to a closed pipe.
pub(crate) fn exit_if_broken_pipe(e: &io::Error) {
    if e.kind() == io::ErrorKind::BrokenPipe {
        std::process::exit(BROKEN_PIPE.into());
    }
}

/// Standard error for the log subscriber: its writes follow the same rule as [`errln!`].
/// (Its other errors are returned to the subscriber, which is told not to report them.)
pub(crate) struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        io::stderr().write(buf).inspect_err(exit_if_broken_pipe)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        io::stderr().write_all(buf).inspect_err(exit_if_broken_pipe)
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush().inspect_err(exit_if_broken_pipe)
    }
}

/// `println!` that does not panic on a closed pipe.
macro_rules! outln {
    () => { $crate::output::stdout_bytes(b"\n") };
    ($($arg:tt)*) => { $crate::output::stdout_fmt(format_args!("{}\n", format_args!($($arg)*))) };
}

/// `eprint!` that does not panic on a closed pipe.
macro_rules! err {
    ($($arg:tt)*) => { $crate::output::stderr_fmt(format_args!($($arg)*)) };
}

/// `eprintln!` that does not panic on a closed pipe.
macro_rules! errln {
    ($($arg:tt)*) => { $crate::output::stderr_fmt(format_args!("{}\n", format_args!($($arg)*))) };
}

pub(crate) use {err, errln, outln};

#[cfg(test)]
mod tests {
    use super::{PrintableStream, printable};

    /// Cut anywhere, in one or two places, a text comes out as it does whole.
    #[test]
    fn a_text_in_pieces_comes_out_as_it_does_whole() {
        let texts: [&[u8]; 4] = [
            b"a\x1b]52;c;Zm9v\x07b\xc2\x9b2Jc\rspoof\r\nd\te\xff\n",
            "d\u{e9}j\u{e0} \u{20ac}\u{1f600}\r\n\r\r\n".as_bytes(),
            b"\xe2\x82\r\xf0\x9f\x98",
            b"\xf0\x9f\x98\x80\xe2\x82\xac\xc3",
        ];
        for text in texts {
            let whole = printable(text);
            for i in 0..=text.len() {
                for j in i..=text.len() {
                    let mut stream = PrintableStream::default();
                    let mut out = stream.push(&text[..i]);
                    out += &stream.push(&text[i..j]);
                    out += &stream.push(&text[j..]);
                    out += &stream.finish();
                    assert_eq!(out, whole, "{text:?} cut at {i} and {j}");
                }
            }
        }
    }

    #[test]
    fn control_characters_of_a_server_are_not_printed() {
        let hostile = b"a\x1b]52;c;Zm9v\x07b\xc2\x9b2Jc\rspoof\r\nd\te\xff\n";
        let shown = printable(hostile);
        assert_eq!(shown, "a\u{fffd}]52;c;Zm9v\u{fffd}b\u{fffd}2Jc\u{fffd}spoof\r\nd\te\u{fffd}\n");
        assert_eq!(printable("Grüße {\"ok\": true}".as_bytes()), "Grüße {\"ok\": true}");
    }
}
