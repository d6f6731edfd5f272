//! Country, region, city and provider from `.mmdb` databases (MaxMind GeoIP2/GeoLite2 and DB-IP layouts).
//!
//! Only the few paths we store are decoded, borrowing from the database, so a lookup does not
//! allocate. A database that is not configured, or whose file is missing, yields empty columns;
//! a file that is present but unreadable is a startup error.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use quick_cache::sync::Cache;

use maxminddb::Reader;
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
        let Some(reader) = &self.reader else {
            return Location::default();
        };
        let record = match reader.lookup(ip).and_then(|r| r.decode::<CityRecord<'_>>()) {
            Ok(Some(r)) => r,
            Ok(None) => return Location::default(),
            Err(e) => {
                tracing::debug!(error = %e, "location lookup failed");
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

    /// Autonomous system and ISP of `ip`; empty when unknown.
    pub fn provider(&self, ip: IpAddr) -> Provider<'_> {
        let Some(reader) = &self.reader else {
            return Provider::default();
        };
        match reader
            .lookup(ip)
            .and_then(|r| r.decode::<ProviderRecord<'_>>())
        {
            Ok(Some(r)) => Provider {
                asn: r.autonomous_system_number.unwrap_or(0),
                as_org: r.autonomous_system_organization.unwrap_or(""),
                isp: r.isp.or(r.organization).unwrap_or(""),
            },
            Ok(None) => Provider::default(),
            Err(e) => {
                tracing::debug!(error = %e, "provider lookup failed");
                Provider::default()
            }
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
/// and a cache hit is far cheaper than two tree walks and decodes.
pub struct Geo {
    city: MmdbFile,
    provider: MmdbFile,
    cache: Cache<IpAddr, Arc<Place>>,
}

impl Geo {
    pub fn new(city: MmdbFile, provider: MmdbFile, capacity: usize) -> Self {
        Self {
            city,
            provider,
            cache: Cache::new(capacity.max(1)),
        }
    }

    /// Location and provider of `ip`, empty where unknown.
    pub fn place(&self, ip: IpAddr) -> Arc<Place> {
        if let Some(hit) = self.cache.get(&ip) {
            return hit;
        }
        let loc = self.city.location(ip);
        let prov = self.provider.provider(ip);
        let place = Arc::new(Place {
            country: loc.country.into(),
            region_code: loc
                .region_code
                .map(|(c, s)| compact_str::format_compact!("{c}-{s}"))
                .unwrap_or_default(),
            region_name: loc.region_name.into(),
            city: loc.city.into(),
            asn: prov.asn,
            as_org: prov.as_org.into(),
            isp: prov.isp.into(),
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

    #[test]
    fn a_corrupt_file_is_a_startup_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.mmdb");
        std::fs::write(&path, b"this is not a maxmind database at all").unwrap();
        let err = MmdbFile::open(Some(&path)).err().unwrap();
        assert!(err.to_string().contains("bad.mmdb"), "{err}");
    }
}
