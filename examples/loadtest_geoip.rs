//! Writes the synthetic City and ISP databases `scripts/loadtest.sh` runs footfall with.
//!
//! `cargo run --release --example loadtest_geoip -- <dir>` prints the two paths. The load test's
//! client addresses all fall in the networks they cover (11.0.0.0 to 126.255.255.255).

#[path = "../tests/support/mmdb.rs"]
mod mmdb;

fn main() {
    let Some(dir) = std::env::args_os().nth(1) else {
        eprintln!("usage: loadtest_geoip <directory>");
        std::process::exit(2);
    };
    let started = std::time::Instant::now();
    let (city, isp) = mmdb::wide_world(std::path::Path::new(&dir));
    eprintln!(
        "wrote {} and {} in {:.1} s",
        city.display(),
        isp.display(),
        started.elapsed().as_secs_f64()
    );
    println!("{}\n{}", city.display(), isp.display());
}
