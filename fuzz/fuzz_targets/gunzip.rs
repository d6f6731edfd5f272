//! `footfall::http::gunzip_bounded(body, limit)`: never panics, never returns more than `limit`
//! bytes, and an `Ok` is the whole decompressed body (a bomb is an error, never silently cut).
//!
//! Input layout: byte 0 picks the range of `limit`, bytes 1..5 (little-endian u32) pick the value,
//! the rest is the body. The ranges cover small limits (every boundary reachable by short bodies),
//! realistic ones (the default is 64 KiB) and the top of `usize` (the limit comes from
//! `FOOTFALL_MAX_DECOMPRESSED_BYTES`, which accepts any `usize`).
#![no_main]

use std::io::Read;

use footfall::http::{gunzip_bounded, ApiError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 5 {
        return;
    }
    let n = u32::from_le_bytes(data[1..5].try_into().unwrap()) as usize;
    let limit = match data[0] % 4 {
        0 => n % 256,
        1 => n % (1 << 20),
        2 => n,
        _ => usize::MAX - n,
    };
    let body = &data[5..];
    match gunzip_bounded(body, limit) {
        Ok(out) => {
            assert!(
                out.len() <= limit,
                "{} bytes returned, limit {limit}",
                out.len()
            );
            // Ok means complete: an independent decoder yields exactly `out` and nothing more.
            let mut reference = Vec::new();
            let res = flate2::read::MultiGzDecoder::new(body)
                .take(out.len() as u64 + 1)
                .read_to_end(&mut reference);
            assert!(
                res.is_ok(),
                "reference decoder failed on an accepted body: {res:?}"
            );
            assert_eq!(
                reference, out,
                "Ok output is not the whole decompressed body"
            );
        }
        Err(ApiError::DecompressedTooLarge { limit: l }) => assert_eq!(l, limit),
        Err(ApiError::BadGzip) => {}
        Err(e) => panic!("unexpected error {e:?}"),
    }
});
