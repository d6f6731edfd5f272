//! Allocation counts on the hot path (parsing, fingerprinting), counted with a global allocator in this test binary.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use footfall::beacon;
use footfall::enrich::fingerprint::FingerprintHasher;

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The first captured beacon: a pageview with its whole device block.
fn captured_pageview() -> &'static str {
    include_str!("fixtures/beacons.jsonl")
        .lines()
        .next()
        .unwrap()
}

#[test]
fn fingerprinting_a_captured_device_allocates_nothing() {
    let line = captured_pageview();
    let parsed = beacon::parse(line.as_bytes()).unwrap();
    let device = parsed.beacon.device.as_ref().unwrap();
    let hasher = FingerprintHasher::new(b"secret");
    let warm = hasher.fingerprint(device);
    let before = ALLOCS.with(Cell::get);
    let mut id = [0u8; 16];
    for _ in 0..100 {
        id = hasher.fingerprint(device);
    }
    let after = ALLOCS.with(Cell::get);
    assert_eq!(id, warm);
    assert_eq!(after - before, 0, "fingerprint() allocated");
}

#[test]
fn parsing_borrows_every_string_and_allocates_once_per_list() {
    let line = captured_pageview();
    let warm = beacon::parse(line.as_bytes()).unwrap();
    let d = warm.beacon.device.as_ref().unwrap();
    let lists = [
        d.langs.len(),
        d.plugins.len(),
        d.uach.as_ref().map_or(0, |u| u.brands.len()),
        d.fonts.as_ref().map_or(0, |f| f.list.len()),
        d.auto.headless.len(),
        d.auto.globals.len(),
        d.auto.flags.len(),
    ];
    let non_empty = lists.iter().filter(|n| **n > 0).count() as u64;
    assert!(
        d.plugins.len() >= 5,
        "the captured device has its plugin list"
    );

    let before = ALLOCS.with(Cell::get);
    let parsed = beacon::parse(line.as_bytes()).unwrap();
    let after = ALLOCS.with(Cell::get);
    // The device block's box and one buffer per non-empty list; no string is copied.
    assert_eq!(after - before, 1 + non_empty, "lists {lists:?}");
    drop(parsed);
}
