//! Test GeoIP databases, generated in the layouts footfall reads (MaxMind GeoIP2 City, GeoLite2-ASN,
//! GeoIP2-ISP, DB-IP City Lite), so no downloaded database is needed.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mmdb_writer::{Value, Writer};

/// A documented address with the answers the generated databases give for it.
pub struct Place {
    pub ip: &'static str,
    pub net: &'static str,
    pub country: &'static str,
    pub region_iso: &'static str,
    pub region_name: &'static str,
    pub city: &'static str,
    pub asn: u32,
    pub as_org: &'static str,
    pub isp: &'static str,
}

pub const ALMATY: Place = Place {
    ip: "5.34.10.20",
    net: "5.34.0.0/16",
    country: "KZ",
    region_iso: "75",
    region_name: "Almaty",
    city: "Almaty",
    asn: 9198,
    as_org: "JSC Kazakhtelecom",
    isp: "Kazakhtelecom",
};

pub const LONDON: Place = Place {
    ip: "81.2.69.142",
    net: "81.2.69.0/24",
    country: "GB",
    region_iso: "ENG",
    region_name: "England",
    city: "London",
    asn: 20712,
    as_org: "Andrews & Arnold Ltd",
    isp: "Andrews & Arnold",
};

fn names(en: &str) -> Value {
    Value::map([
        ("en", Value::from(en)),
        ("ru", Value::from(format!("{en} (ru)"))),
    ])
}

fn city_record(p: &Place) -> Value {
    Value::map([
        (
            "city",
            Value::map([("geoname_id", Value::from(1u32)), ("names", names(p.city))]),
        ),
        (
            "country",
            Value::map([
                ("iso_code", Value::from(p.country)),
                ("names", names(p.country)),
            ]),
        ),
        (
            "subdivisions",
            Value::array([Value::map([
                ("iso_code", Value::from(p.region_iso)),
                ("names", names(p.region_name)),
            ])]),
        ),
        (
            "location",
            Value::map([("time_zone", Value::from("Asia/Almaty"))]),
        ),
    ])
}

fn write(dir: &Path, file: &str, db_type: &str, records: impl Fn(&Place) -> Value) -> PathBuf {
    let mut w = Writer::new(db_type);
    for p in [&ALMATY, &LONDON] {
        w.insert_value(p.net.parse::<ipnet::IpNet>().unwrap(), records(p))
            .unwrap();
    }
    let path = dir.join(file);
    std::fs::write(&path, w.to_bytes().unwrap()).unwrap();
    path
}

/// GeoIP2-City layout.
pub fn city_db(dir: &Path) -> PathBuf {
    write(dir, "GeoIP2-City-Test.mmdb", "GeoIP2-City", city_record)
}

/// DB-IP City Lite layout: same paths, different database type and no geoname ids.
pub fn dbip_city_db(dir: &Path) -> PathBuf {
    write(dir, "dbip-city-lite.mmdb", "DBIP-City-Lite", |p| {
        Value::map([
            ("city", Value::map([("names", names(p.city))])),
            (
                "country",
                Value::map([
                    ("iso_code", Value::from(p.country)),
                    ("names", names(p.country)),
                ]),
            ),
            (
                "subdivisions",
                Value::array([Value::map([("names", names(p.region_name))])]),
            ),
        ])
    })
}

/// GeoLite2-ASN layout.
pub fn asn_db(dir: &Path) -> PathBuf {
    write(dir, "GeoLite2-ASN-Test.mmdb", "GeoLite2-ASN", |p| {
        Value::map([
            ("autonomous_system_number", Value::from(p.asn)),
            ("autonomous_system_organization", Value::from(p.as_org)),
        ])
    })
}

/// GeoIP2-ISP layout: ASN plus ISP and organisation names.
pub fn isp_db(dir: &Path) -> PathBuf {
    write(dir, "GeoIP2-ISP-Test.mmdb", "GeoIP2-ISP", |p| {
        let mut m = BTreeMap::new();
        m.insert("autonomous_system_number".to_string(), Value::from(p.asn));
        m.insert(
            "autonomous_system_organization".to_string(),
            Value::from(p.as_org),
        );
        m.insert("isp".to_string(), Value::from(p.isp));
        m.insert("organization".to_string(), Value::from(p.isp));
        Value::map(m)
    })
}

/// The part of the IPv4 space [`wide_world`] covers: every address from 11.0.0.0 to
/// 126.255.255.255 is in one of its networks.
pub const WIDE_FIRST_OCTETS: std::ops::RangeInclusive<u8> = 11..=126;

/// A synthetic world about as deep as a real City database: every /20 of [`WIDE_FIRST_OCTETS`]
/// (475 136 networks, so an IPv4 lookup walks 20 levels below the IPv4 subtree, where one in a
/// real GeoLite2-City walks 16-32), each with one of 48 places and one of 400 providers, in the
/// same IPv6 layout as MaxMind's files. Each file is 2.7 MiB: lookups scattered over it miss the
/// CPU caches as real ones do, where the two-network databases above stay in them. For the load
/// test and the `enrich` bench. Returns the City and the ISP database, written into `dir`
/// (about 3 s).
pub fn wide_world(dir: &Path) -> (PathBuf, PathBuf) {
    const COUNTRIES: [(&str, &str, &str); 16] = [
        ("KZ", "75", "Almaty"),
        ("KZ", "71", "Astana"),
        ("KZ", "55", "Pavlodar"),
        ("RU", "MOW", "Moscow"),
        ("RU", "SPE", "Saint Petersburg"),
        ("UZ", "TK", "Tashkent"),
        ("KG", "GB", "Bishkek"),
        ("TR", "34", "Istanbul"),
        ("DE", "BE", "Berlin"),
        ("DE", "HE", "Frankfurt am Main"),
        ("GB", "ENG", "London"),
        ("NL", "NH", "Amsterdam"),
        ("US", "CA", "San Jose"),
        ("US", "VA", "Ashburn"),
        ("CN", "BJ", "Beijing"),
        ("AE", "DU", "Dubai"),
    ];
    const PREFIX: u8 = 20;
    let places: Vec<Value> = (0..48)
        .map(|i| {
            let (country, region, city) = COUNTRIES[i % COUNTRIES.len()];
            // Three cities per region, so answers differ beyond the country.
            let city = format!("{city} {}", i / COUNTRIES.len() + 1);
            Value::map([
                (
                    "city",
                    Value::map([
                        ("geoname_id", Value::from(1000 + i as u32)),
                        ("names", names(&city)),
                    ]),
                ),
                (
                    "country",
                    Value::map([
                        ("iso_code", Value::from(country)),
                        ("names", names(country)),
                    ]),
                ),
                (
                    "subdivisions",
                    Value::array([Value::map([
                        ("iso_code", Value::from(region)),
                        ("names", names(region)),
                    ])]),
                ),
            ])
        })
        .collect();
    let providers: Vec<Value> = (0..400u32)
        .map(|j| {
            Value::map([
                ("autonomous_system_number", Value::from(64_000 + j)),
                (
                    "autonomous_system_organization",
                    Value::from(format!("AS{j} Networks")),
                ),
                ("isp", Value::from(format!("Provider {j}"))),
                ("organization", Value::from(format!("Provider {j}"))),
            ])
        })
        .collect();
    // Each database is written on its own thread: building the tree is most of the time.
    let build = |kind: &str, file: &str, answers: &[Value], shift: u32| {
        let mut w = Writer::new(kind);
        let (first, last) = (*WIDE_FIRST_OCTETS.start(), *WIDE_FIRST_OCTETS.end());
        let per_octet = 1u32 << (PREFIX - 8);
        for i in u32::from(first) * per_octet..(u32::from(last) + 1) * per_octet {
            let net =
                ipnet::Ipv4Net::new(std::net::Ipv4Addr::from(i << (32 - PREFIX)), PREFIX).unwrap();
            // Neighbouring networks get unrelated answers (a multiplicative hash of the index).
            let h = i.wrapping_mul(2_654_435_761) >> shift;
            w.insert_value(net, answers[h as usize % answers.len()].clone())
                .unwrap();
        }
        let path = dir.join(file);
        std::fs::write(&path, w.to_bytes().unwrap()).unwrap();
        path
    };
    std::thread::scope(|s| {
        let city = s.spawn(|| build("GeoIP2-City", "wide-GeoIP2-City.mmdb", &places, 8));
        let isp = build("GeoIP2-ISP", "wide-GeoIP2-ISP.mmdb", &providers, 16);
        (city.join().unwrap(), isp)
    })
}
