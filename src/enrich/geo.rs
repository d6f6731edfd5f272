//! Country, region, city and provider from `.mmdb` databases (MaxMind GeoIP2/GeoLite2 and DB-IP layouts).
//!
//! Only the few paths we store are decoded, borrowing from the database, so a lookup does not
//! allocate. A database that is not configured, or whose file is missing, yields empty columns;
//! a file that is present but unreadable is a startup error.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use quick_cache::sync::Cache;

use maxminddb::{LookupResult, Reader};
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
#[error("GeoIP database {path} cannot be used: {reason}")]
pub struct GeoOpenError {
    pub path: String,
    pub reason: String,
}

/// What the location database says about an address.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Location<'a> {
    pub country: &'a str,
    /// ISO 3166-2, e.g. `KZ-ALA` (country code, dash, subdivision code).
    pub region_code: Option<(&'a str, &'a str)>,
    pub region_name: &'a str,
    pub city: &'a str,
}

/// What the ASN/ISP database says about an address.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Provider<'a> {
    pub asn: u32,
    pub as_org: &'a str,
    pub isp: &'a str,
}

#[derive(Deserialize, Default)]
struct Names<'a> {
    #[serde(borrow, default)]
    en: Option<&'a str>,
}

#[derive(Deserialize, Default)]
struct Coded<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
    #[serde(borrow, default)]
    names: Names<'a>,
}

#[derive(Deserialize, Default)]
struct Named<'a> {
    #[serde(borrow, default)]
    names: Names<'a>,
}

#[derive(Deserialize)]
struct CityRecord<'a> {
    #[serde(borrow, default)]
    country: Coded<'a>,
    #[serde(borrow, default)]
    subdivisions: Vec<Coded<'a>>,
    #[serde(borrow, default)]
    city: Named<'a>,
}

#[derive(Deserialize)]
struct ProviderRecord<'a> {
    #[serde(default)]
    autonomous_system_number: Option<u32>,
    #[serde(borrow, default)]
    autonomous_system_organization: Option<&'a str>,
    #[serde(borrow, default)]
    isp: Option<&'a str>,
    #[serde(borrow, default)]
    organization: Option<&'a str>,
}

/// An opened `.mmdb`, or nothing.
pub struct MmdbFile {
    reader: Option<Reader<Vec<u8>>>,
    pub database_type: String,
}

impl MmdbFile {
    /// Opens `path`. `None` or a missing file give an empty database (with a warning for the latter).
    pub fn open(path: Option<&Path>) -> Result<Self, GeoOpenError> {
        let Some(path) = path else {
            return Ok(Self::empty());
        };
        if !path.exists() {
            tracing::warn!(path = %path.display(), "GeoIP database not found; its columns stay empty");
            return Ok(Self::empty());
        }
        let err = |reason: String| GeoOpenError {
            path: path.display().to_string(),
            reason,
        };
        let reader = Reader::open_readfile(path).map_err(|e| err(e.to_string()))?;
        // A lookup walks the whole tree depth; doing one now turns a corrupt search tree into a
        // startup error instead of silent empty columns later.
        let probe: IpAddr = if reader.metadata().ip_version == 6 {
            "2001:4860::1".parse().map_err(|_| err("probe".into()))?
        } else {
            "8.8.8.8".parse().map_err(|_| err("probe".into()))?
        };
        reader
            .lookup(probe)
            .map_err(|e| err(e.to_string()))?
            .decode::<serde::de::IgnoredAny>()
            .map_err(|e| err(e.to_string()))?;
        let database_type = reader.metadata().database_type.clone();
        Ok(Self {
            reader: Some(reader),
            database_type,
        })
    }

    pub fn empty() -> Self {
        Self {
            reader: None,
            database_type: String::new(),
        }
    }

    /// `GeoLite2-City (built 2026-11-20)`, or empty when no database is loaded.
    pub fn describe(&self) -> String {
        match &self.reader {
            Some(r) => {
                let days = r.metadata().build_epoch as i64 / 86_400;
                let (y, m, d) = crate::clock::civil_date(days);
                format!("{} (built {y:04}-{m:02}-{d:02})", self.database_type)
            }
            None => String::new(),
        }
    }

    pub fn is_loaded(&self) -> bool {
        self.reader.is_some()
    }

    /// Country, first-level region and city of `ip`; empty when unknown.
    pub fn location(&self, ip: IpAddr) -> Location<'_> {
        self.lookup(ip)
            .map(|r| decode_location(&r))
            .unwrap_or_default()
    }

    /// Autonomous system and ISP of `ip`; empty when unknown.
    pub fn provider(&self, ip: IpAddr) -> Provider<'_> {
        self.lookup(ip)
            .map(|r| decode_provider(&r))
            .unwrap_or_default()
    }

    /// The record the database has for `ip`, not yet decoded; `None` without a database or a record.
    fn lookup(&self, ip: IpAddr) -> Option<LookupResult<'_, Vec<u8>>> {
        match self.reader.as_ref()?.lookup(ip) {
            Ok(r) if r.has_data() => Some(r),
            Ok(_) => None,
            Err(e) => {
                tracing::debug!(error = %e, "GeoIP lookup failed");
                None
            }
        }
    }

    /// The decoded record for `ip`, from `records` when the record at its data-section offset was
    /// decoded before: many networks share one record (a city, a provider), and decoding costs
    /// several times the tree walk.
    fn record<T: Clone + Default>(
        &self,
        ip: IpAddr,
        records: &Cache<usize, T>,
        decode: impl FnOnce(&LookupResult<'_, Vec<u8>>) -> T,
    ) -> T {
        let Some(found) = self.lookup(ip) else {
            return T::default();
        };
        let Some(offset) = found.offset() else {
            return decode(&found);
        };
        if let Some(hit) = records.get(&offset) {
            return hit;
        }
        let record = decode(&found);
        records.insert(offset, record.clone());
        record
    }
}

fn decode_location<'a>(found: &LookupResult<'a, Vec<u8>>) -> Location<'a> {
    let record = match found.decode::<CityRecord<'a>>() {
        Ok(Some(r)) => r,
        Ok(None) => return Location::default(),
        Err(e) => {
            tracing::debug!(error = %e, "location record cannot be decoded");
            return Location::default();
        }
    };
    let country = record.country.iso_code.unwrap_or("");
    let first = record.subdivisions.first();
    Location {
        country,
        region_code: first
            .and_then(|s| s.iso_code)
            .filter(|_| !country.is_empty())
            .map(|code| (country, code)),
        region_name: first.and_then(|s| s.names.en).unwrap_or(""),
        city: record.city.names.en.unwrap_or(""),
    }
}

fn decode_provider<'a>(found: &LookupResult<'a, Vec<u8>>) -> Provider<'a> {
    match found.decode::<ProviderRecord<'a>>() {
        Ok(Some(r)) => Provider {
            asn: r.autonomous_system_number.unwrap_or(0),
            as_org: r.autonomous_system_organization.unwrap_or(""),
            isp: r.isp.or(r.organization).unwrap_or(""),
        },
        Ok(None) => Provider::default(),
        Err(e) => {
            tracing::debug!(error = %e, "provider record cannot be decoded");
            Provider::default()
        }
    }
}

/// A location record as stored in the row.
#[derive(Debug, Default, Clone, PartialEq)]
struct StoredLocation {
    country: compact_str::CompactString,
    region_code: compact_str::CompactString,
    region_name: compact_str::CompactString,
    city: compact_str::CompactString,
}

impl From<Location<'_>> for StoredLocation {
    fn from(loc: Location<'_>) -> Self {
        StoredLocation {
            country: loc.country.into(),
            region_code: loc
                .region_code
                .map(|(c, s)| compact_str::format_compact!("{c}-{s}"))
                .unwrap_or_default(),
            region_name: loc.region_name.into(),
            city: loc.city.into(),
        }
    }
}

/// A provider record as stored in the row.
#[derive(Debug, Default, Clone, PartialEq)]
struct StoredProvider {
    asn: u32,
    as_org: compact_str::CompactString,
    isp: compact_str::CompactString,
}

impl From<Provider<'_>> for StoredProvider {
    fn from(p: Provider<'_>) -> Self {
        StoredProvider {
            asn: p.asn,
            as_org: p.as_org.into(),
            isp: p.isp.into(),
        }
    }
}

/// The owned answers for one address, as stored in the row.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Place {
    pub country: compact_str::CompactString,
    pub region_code: compact_str::CompactString,
    pub region_name: compact_str::CompactString,
    pub city: compact_str::CompactString,
    pub asn: u32,
    pub as_org: compact_str::CompactString,
    pub isp: compact_str::CompactString,
}

/// Both databases behind one bounded cache: a visitor sends several events from one address,
/// and a cache hit is far cheaper than two tree walks. Behind it, each database's decoded records
/// are cached by where they sit in the file, so an address seen for the first time mostly costs
/// the two walks and no decoding.
pub struct Geo {
    city: MmdbFile,
    provider: MmdbFile,
    cache: Cache<IpAddr, Arc<Place>>,
    locations: Cache<usize, Arc<StoredLocation>>,
    providers: Cache<usize, Arc<StoredProvider>>,
}

/// Decoded records kept per database. A country database has a few hundred, a city one about
/// a hundred thousand of which a site's visitors reach a small part; 16 384 entries are ~3 MiB.
const RECORD_CACHE: usize = 16_384;

impl Geo {
    pub fn new(city: MmdbFile, provider: MmdbFile, capacity: usize) -> Self {
        Self {
            city,
            provider,
            cache: Cache::new(capacity.max(1)),
            locations: Cache::new(RECORD_CACHE),
            providers: Cache::new(RECORD_CACHE),
        }
    }

    /// Location and provider of `ip`, empty where unknown.
    pub fn place(&self, ip: IpAddr) -> Arc<Place> {
        if let Some(hit) = self.cache.get(&ip) {
            return hit;
        }
        let loc = self
            .city
            .record(ip, &self.locations, |r| Arc::new(decode_location(r).into()));
        let prov = self
            .provider
            .record(ip, &self.providers, |r| Arc::new(decode_provider(r).into()));
        let place = Arc::new(Place {
            country: loc.country.clone(),
            region_code: loc.region_code.clone(),
            region_name: loc.region_name.clone(),
            city: loc.city.clone(),
            asn: prov.asn,
            as_org: prov.as_org.clone(),
            isp: prov.isp.clone(),
        });
        self.cache.insert(ip, place.clone());
        place
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unconfigured_and_missing_databases_are_empty() {
        let ip: IpAddr = "81.2.69.142".parse().unwrap();
        let none = MmdbFile::open(None).unwrap();
        assert_eq!(none.location(ip), Location::default());
        let missing = MmdbFile::open(Some(Path::new("/nonexistent/city.mmdb"))).unwrap();
        assert!(!missing.is_loaded());
        assert_eq!(missing.provider(ip), Provider::default());
    }

    /// A City database with three networks: two share one record (same city), one has its own.
    fn shared_record_city(dir: &Path) -> std::path::PathBuf {
        use mmdb_writer::{Value, Writer};
        let city = |iso: &str, region: &str, name: &str| {
            let names = |en: &str| Value::map([("en", Value::from(en))]);
            Value::map([
                ("city", Value::map([("names", names(name))])),
                ("country", Value::map([("iso_code", Value::from(iso))])),
                (
                    "subdivisions",
                    Value::array([Value::map([
                        ("iso_code", Value::from(region)),
                        ("names", names(name)),
                    ])]),
                ),
            ])
        };
        let mut w = Writer::new("GeoIP2-City");
        for (net, iso, region, name) in [
            ("5.34.0.0/16", "KZ", "75", "Almaty"),
            ("37.150.0.0/16", "KZ", "75", "Almaty"),
            ("81.2.69.0/24", "GB", "ENG", "London"),
        ] {
            w.insert_value(
                net.parse::<ipnet::IpNet>().unwrap(),
                city(iso, region, name),
            )
            .unwrap();
        }
        let path = dir.join("shared.mmdb");
        std::fs::write(&path, w.to_bytes().unwrap()).unwrap();
        path
    }

    #[test]
    fn networks_that_share_a_record_decode_it_once() {
        let dir = tempfile::tempdir().unwrap();
        let city = MmdbFile::open(Some(&shared_record_city(dir.path()))).unwrap();
        let geo = Geo::new(city, MmdbFile::empty(), 64);
        let first = geo.place("5.34.10.20".parse().unwrap());
        assert_eq!(
            (
                first.country.as_str(),
                first.region_code.as_str(),
                first.city.as_str()
            ),
            ("KZ", "KZ-75", "Almaty")
        );
        assert_eq!(geo.locations.len(), 1);
        // Another network, another address, the same record: answered without decoding again.
        let second = geo.place("37.150.1.2".parse().unwrap());
        assert_eq!(second, first);
        assert_eq!((geo.cache.len(), geo.locations.len()), (2, 1));
        let london = geo.place("81.2.69.142".parse().unwrap());
        assert_eq!(
            (london.country.as_str(), london.city.as_str()),
            ("GB", "London")
        );
        assert_eq!(geo.locations.len(), 2);
        // Unknown addresses and a missing provider database give empty answers, cached too.
        let nowhere = geo.place("192.0.2.1".parse().unwrap());
        assert_eq!(*nowhere, Place::default());
        assert_eq!((first.asn, first.isp.as_str()), (0, ""));
        assert_eq!((geo.locations.len(), geo.providers.len()), (2, 0));
    }

    #[test]
    fn a_corrupt_file_is_a_startup_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.mmdb");
        std::fs::write(&path, b"this is not a maxmind database at all").unwrap();
        let err = MmdbFile::open(Some(&path)).err().unwrap();
        assert!(err.to_string().contains("bad.mmdb"), "{err}");
    }
}
