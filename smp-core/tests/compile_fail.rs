//! Compile-time guarantees of `#[chare]` proxies: a method that does not exist, wrong
//! argument types, non-sendable arguments and malformed entry methods do not compile,
//! with a clear message.

#[test]
#[cfg_attr(miri, ignore)]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
