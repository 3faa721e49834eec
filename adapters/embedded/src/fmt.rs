//! The logging shim: `trace!` … `error!` forward to `defmt` or `log` when one of those features
//! is on, and compile to nothing otherwise (their arguments are still type-checked and
//! "used", so turning logging off changes no warning and no behaviour).
//!
//! Messages use `{}` placeholders with arguments that are both `Display` and `defmt::Format`
//! (integers, `&str`), so one call site serves both back ends. Never pass a secret.
#![allow(unused_macros)]

#[cfg(all(feature = "defmt", feature = "log"))]
compile_error!("features `defmt` and `log` are mutually exclusive: enable at most one");

macro_rules! log_at {
    ($level:ident, $s:literal $(, $x:expr)* $(,)?) => {{
        #[cfg(feature = "defmt")]
        ::defmt::$level!($s $(, $x)*);
        #[cfg(feature = "log")]
        ::log::$level!($s $(, $x)*);
        #[cfg(not(any(feature = "defmt", feature = "log")))]
        let _ = ($(&$x,)*);
    }};
}

macro_rules! trace {
    ($($t:tt)*) => { log_at!(trace, $($t)*) };
}

macro_rules! debug {
    ($($t:tt)*) => { log_at!(debug, $($t)*) };
}

macro_rules! info {
    ($($t:tt)*) => { log_at!(info, $($t)*) };
}

macro_rules! warn {
    ($($t:tt)*) => { log_at!(warn, $($t)*) };
}

macro_rules! error {
    ($($t:tt)*) => { log_at!(error, $($t)*) };
}
