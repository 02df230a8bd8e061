// A cdylib has no SONAME unless the linker is told: give it the ABI major.
fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libprocspy.so.0");
}
