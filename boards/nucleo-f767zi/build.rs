//! Links with cortex-m-rt's `link.x`; embassy-stm32's `memory-x` feature supplies the chip's
//! `memory.x`.

fn main() {
    println!("cargo:rustc-link-arg-bins=-Tlink.x");
}
