//! The fingerprint hot path allocates nothing: counted with a global allocator in this test binary.

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

#[test]
fn fingerprinting_a_captured_device_allocates_nothing() {
    let line = include_str!("fixtures/beacons.jsonl")
        .lines()
        .next()
        .unwrap();
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
