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
