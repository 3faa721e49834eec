//! Links with cortex-m-rt's `link.x` (embassy-stm32's `memory-x` feature supplies `memory.x`
//! for the chip) and embassy's defmt-free link script needs nothing more.

fn main() {
    println!("cargo:rustc-link-arg-bins=-Tlink.x");
}
