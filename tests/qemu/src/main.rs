//! # credflow-qemu (binary)
//!
//! Runs the [`credflow_qemu`] suite on a Cortex-M4F under `qemu-system-arm -machine mps2-an386`
//! with semihosting: each outcome and the summary go to the host's stdout, and qemu exits with
//! the suite's status (`scripts/qemu-test`). A panic or a HardFault prints what it can and exits
//! with failure too, so a crash never looks like a pass or a hang.
//!
//! It also measures how deep the stack went in each check (cortex-m-rt's `paint-stack` fills the
//! stack with a known word before `main`, the runner repaints it between checks, the deepest
//! overwritten word is the peak), prints it beside the outcome, and fails the run if a check
//! went beyond `STACK_BUDGET` (32 KiB).
//!
//! On the host this binary is an empty stub, so `cargo test --workspace` can link it; the suite
//! runs there as `tests/host.rs`.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod target {
    // Linked for its `critical-section` implementation, which cortex-m-semihosting needs.
    use cortex_m as _;
    use cortex_m_rt::{ExceptionFrame, entry, exception};
    use cortex_m_semihosting::{debug, hprintln};
    use credflow_qemu::{CHECKS, Outcome, footprint, run};

    /// Stack any one check may use, in bytes, counted from the top of the stack. The session
    /// checks need about 26 KiB (a `Session<256, 2>`, its construction and the inlined calls;
    /// BENCHMARKS.md has the breakdown); a part with 64 KiB of RAM can give this.
    pub(crate) const STACK_BUDGET: usize = 32 * 1024;

    #[entry]
    fn main() -> ! {
        hprintln!(
            "credflow-qemu: {} checks of credflow-core on a Cortex-M4F (thumbv7em-none-eabihf)",
            CHECKS.len()
        );
        for (name, bytes) in footprint() {
            hprintln!("size_of {}: {} bytes", name, bytes);
        }
        let mut deepest = ("", "", 0);
        stack::repaint();
        let summary = run(&mut |o: &Outcome<'_>| {
            let (area, name, peak) = (o.check.area, o.check.name, stack::peak());
            if peak > deepest.2 {
                deepest = (area, name, peak);
            }
            match o.result {
                Ok(()) => hprintln!("ok   {}::{} (stack {} bytes)", area, name, peak),
                Err(failure) => {
                    hprintln!("FAIL {}::{}: {} (stack {} bytes)", area, name, failure, peak)
                }
            }
            stack::repaint();
        });
        let (area, name, peak) = deepest;
        let within = peak <= STACK_BUDGET;
        hprintln!("peak stack: {} bytes in {}::{} (budget {})", peak, area, name, STACK_BUDGET);
        if !within {
            hprintln!("FAIL stack: a check used more stack than the budget");
        }
        hprintln!("{}", summary);
        exit(summary.success() && within)
    }

    fn exit(success: bool) -> ! {
        debug::exit(if success { debug::EXIT_SUCCESS } else { debug::EXIT_FAILURE });
        // Only reached without a semihosting host; qemu has exited by now.
        loop {
            core::hint::spin_loop();
        }
    }

    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
        hprintln!("PANIC {}", info);
        exit(false)
    }

    #[exception]
    unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
        hprintln!("HardFault at pc {:#010x} (lr {:#010x})", frame.pc(), frame.lr());
        exit(false)
    }

    /// Stack high-water marks. cortex-m-rt (`paint-stack`) fills `[_stack_end, _stack_start)`
    /// with [`STACK_PAINT_VALUE`] before `main`; [`repaint`](stack::repaint) refills what lies
    /// below the caller, so [`peak`](stack::peak) then measures what ran since. The memory is
    /// addressed by integer (exposed provenance), like a peripheral: it belongs to no Rust object.
    mod stack {
        use core::ptr::{
            read_volatile, with_exposed_provenance, with_exposed_provenance_mut, write_volatile,
        };

        use cortex_m_rt::STACK_PAINT_VALUE;

        unsafe extern "C" {
            /// Top of the stack (from cortex-m-rt's `link.x`).
            static _stack_start: u32;
            /// Lowest address the stack may reach: the end of `.bss`.
            static _stack_end: u32;
        }

        /// Bytes left unpainted below the caller's frame, for `repaint`'s own frame.
        const MARGIN: usize = 256;

        fn bounds() -> (usize, usize) {
            ((&raw const _stack_end).addr(), (&raw const _stack_start).addr())
        }

        /// Bytes from the top of the stack down to the deepest word that lost its paint.
        pub(crate) fn peak() -> usize {
            let (bottom, top) = bounds();
            let mut addr = bottom;
            while addr < top {
                // SAFETY: `[bottom, top)` is RAM the linker script reserves for the stack, and
                // word-aligned (it asserts both ends); reading it has no side effect and nothing
                // runs concurrently (no interrupt is enabled).
                if unsafe { read_volatile(with_exposed_provenance::<u32>(addr)) }
                    != STACK_PAINT_VALUE
                {
                    break;
                }
                addr += 4;
            }
            top - addr
        }

        /// Paints the stack again from its lowest address up to `MARGIN` bytes below this
        /// function's frame: all of it is free (below the stack pointer, nothing lives).
        #[inline(never)]
        pub(crate) fn repaint() {
            let here = core::hint::black_box(0u32);
            let limit = (&raw const here).addr().saturating_sub(MARGIN) & !3;
            let (mut addr, _) = bounds();
            while addr < limit {
                // SAFETY: `[_stack_end, limit)` is word-aligned stack RAM below this frame's
                // stack pointer, so no live value is there; no interrupt can push into it.
                unsafe {
                    write_volatile(with_exposed_provenance_mut::<u32>(addr), STACK_PAINT_VALUE)
                };
                addr += 4;
            }
        }
    }
}
