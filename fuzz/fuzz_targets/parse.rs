//! Arbitrary bytes into `footfall::beacon::parse`: never panics; an accepted beacon keeps every
//! documented invariant (see `footfall_fuzz::check_parse`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    footfall_fuzz::check_parse(data);
});
