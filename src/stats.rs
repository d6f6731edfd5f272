//! Named analyst queries (`schema/queries/*.sql`) and rollup statements (`schema/rollups/*.sql`):
//! their headers, typed parameters bound on the client, and results as columns and rows.
//!
//! The SQL files use ClickHouse's parameter syntax (`{site:String}`), so they read like what
//! current servers run natively. Debian's 18.16 has no server-side parameters, so footfall binds
//! on the client instead: each placeholder becomes the crate's `?` (escaped literal) of a value
//! already checked against its declared type. No input is ever concatenated into SQL.

use std::collections::HashMap;
use std::sync::OnceLock;

use clickhouse::Client;
use serde::Serialize;

/// A named query's file: its name (the file name) and text.
macro_rules! query_file {
    ($name:literal) => {
        (
            $name,
            include_str!(concat!("../schema/queries/", $name, ".sql")),
        )
    };
}

/// The named queries, in dashboard order.
const QUERY_FILES: &[(&str, &str)] = &[
    query_file!("overview"),
    query_file!("timeseries"),
    query_file!("top_pages"),
    query_file!("entry_pages"),
    query_file!("exit_pages"),
    query_file!("outbound_links"),
    query_file!("referrers"),
    query_file!("channels"),
    query_file!("navigation"),
    query_file!("countries"),
    query_file!("regions"),
    query_file!("providers"),
    query_file!("browsers"),
    query_file!("os"),
    query_file!("devices"),
    query_file!("screens"),
    query_file!("languages"),
    query_file!("timezones"),
    query_file!("cpu_architectures"),
    query_file!("automation"),
    query_file!("fingerprints_multi_visitor"),
    query_file!("visitors_multi_fingerprint"),
    query_file!("sessions_per_user"),
];

/// The statements of the rollup job.
pub const DAILY_SUMMARY_SQL: &str = include_str!("../schema/rollups/daily_summary.sql");
pub const SESSION_BREAKDOWN_SQL: &str = include_str!("../schema/rollups/session_breakdown.sql");
pub const DAILY_BREAKDOWN_SQL: &str = include_str!("../schema/rollups/daily_breakdown.sql");

/// The largest `limit` a caller may ask for.
pub const MAX_LIMIT: u32 = 1000;
/// The longest date range a query may cover.
pub const MAX_RANGE_DAYS: i64 = 3 * 366;

/// The type of a parameter, as written in the placeholder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ParamType {
    String,
    Date,
    UInt32,
    UInt64,
}

impl ParamType {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "String" => ParamType::String,
            "Date" => ParamType::Date,
            "UInt32" => ParamType::UInt32,
            "UInt64" => ParamType::UInt64,
            _ => return None,
        })
    }
}

/// A checked parameter value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    String(String),
    Date(time::Date),
    UInt(u64),
}

impl Value {
    fn ty_ok(&self, ty: ParamType) -> bool {
        matches!(
            (self, ty),
            (Value::String(_), ParamType::String)
                | (Value::Date(_), ParamType::Date)
                | (Value::UInt(_), ParamType::UInt64)
        ) || matches!((self, ty), (Value::UInt(n), ParamType::UInt32) if *n <= u32::MAX as u64)
    }
}

/// One named query, parsed from its file's header.
#[derive(Debug, Clone, Serialize)]
pub struct NamedQuery {
    pub name: String,
    pub title: String,
    /// What the query answers (the `answers:` line).
    pub description: String,
    pub params: Vec<(String, ParamType)>,
    /// The result columns (checked against the real result by the tests).
    pub columns: Vec<String>,
    /// Which tables it reads.
    pub source: String,
    #[serde(skip)]
    pub sql: &'static str,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum StatsError {
    #[error("no query named {0:?}")]
    UnknownQuery(String),
    #[error("{0}")]
    BadParameter(String),
    #[error("malformed query file: {0}")]
    Malformed(String),
}

/// Parses a query file: `-- key: value` header lines, then the SQL.
pub fn parse_file(sql: &'static str) -> Result<NamedQuery, StatsError> {
    let mut fields: HashMap<&str, &str> = HashMap::new();
    for line in sql.lines() {
        let Some(rest) = line.trim().strip_prefix("--") else {
            break;
        };
        if let Some((k, v)) = rest.trim().split_once(':') {
            fields.entry(k.trim()).or_insert(v.trim());
        }
    }
    let get = |k: &str| fields.get(k).copied().unwrap_or("");
    let name = get("name");
    if name.is_empty() {
        return Err(StatsError::Malformed("no `-- name:` line".into()));
    }
    let mut params = Vec::new();
    for p in get("params")
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let (n, t) = p
            .split_once(' ')
            .ok_or_else(|| StatsError::Malformed(format!("{name}: parameter {p:?}")))?;
        let ty = ParamType::parse(t.trim())
            .ok_or_else(|| StatsError::Malformed(format!("{name}: type of {p:?}")))?;
        params.push((n.trim().to_owned(), ty));
    }
    let declared: Vec<(String, ParamType)> = placeholders(sql)?;
    for (n, t) in &declared {
        if !params.iter().any(|(pn, pt)| pn == n && pt == t) {
            return Err(StatsError::Malformed(format!(
                "{name}: placeholder {{{n}:{t:?}}} is not in its params line"
            )));
        }
    }
    Ok(NamedQuery {
        name: name.to_owned(),
        title: get("title").to_owned(),
        description: get("answers").to_owned(),
        params,
        columns: get("columns")
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect(),
        source: get("source").to_owned(),
        sql,
    })
}

/// Every `{name:Type}` placeholder of `sql`, in order.
fn placeholders(sql: &str) -> Result<Vec<(String, ParamType)>, StatsError> {
    let mut out = Vec::new();
    for_each_placeholder(sql, |_, name, ty| {
        out.push((name.to_owned(), ty));
        Ok(())
    })?;
    Ok(out)
}

/// Calls `f(byte_range, name, type)` for each placeholder outside comments and string literals.
fn for_each_placeholder(
    sql: &str,
    mut f: impl FnMut(std::ops::Range<usize>, &str, ParamType) -> Result<(), StatsError>,
) -> Result<(), StatsError> {
    let b = sql.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'\'' => {
                i += 1;
                while i < b.len() && b[i] != b'\'' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
            }
            b'{' => {
                let end = sql[i..]
                    .find('}')
                    .map(|e| i + e)
                    .ok_or_else(|| StatsError::Malformed("unclosed `{`".into()))?;
                let inner = &sql[i + 1..end];
                let (name, ty) = inner
                    .split_once(':')
                    .ok_or_else(|| StatsError::Malformed(format!("placeholder {{{inner}}}")))?;
                let ty = ParamType::parse(ty.trim())
                    .ok_or_else(|| StatsError::Malformed(format!("type in {{{inner}}}")))?;
                f(i..end + 1, name.trim(), ty)?;
                i = end + 1;
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// `sql` with each placeholder replaced by the crate's `?` (a `Date` by `toDate(?)`), and the
/// values to bind in order. Every placeholder must have a value of its declared type.
pub fn bind(sql: &str, values: &HashMap<&str, Value>) -> Result<(String, Vec<Value>), StatsError> {
    let mut out = String::with_capacity(sql.len());
    let mut bound = Vec::new();
    let mut last = 0;
    for_each_placeholder(sql, |range, name, ty| {
        let v = values
            .get(name)
            .ok_or_else(|| StatsError::BadParameter(format!("parameter `{name}` is required")))?;
        if !v.ty_ok(ty) {
            return Err(StatsError::BadParameter(format!(
                "parameter `{name}` must be a {ty:?}"
            )));
        }
        // The crate reads `?` as a placeholder: a literal one in the SQL is written `??`.
        out.push_str(&sql[last..range.start].replace('?', "??"));
        out.push_str(if ty == ParamType::Date {
            "toDate(?)"
        } else {
            "?"
        });
        bound.push(v.clone());
        last = range.end;
        Ok(())
    })?;
    out.push_str(&sql[last..].replace('?', "??"));
    Ok((out, bound))
}

/// A query on `db` with `sql`'s placeholders bound to `values`.
pub fn query(
    db: &Client,
    sql: &str,
    values: &HashMap<&str, Value>,
) -> Result<clickhouse::query::Query, StatsError> {
    let (text, bound) = bind(sql, values)?;
    let mut q = db.query(&text);
    for v in bound {
        q = match v {
            Value::String(s) => q.bind(s),
            Value::Date(d) => q.bind(format_date(d)),
            Value::UInt(n) => q.bind(n),
        };
    }
    Ok(q)
}

/// `YYYY-MM-DD`.
pub fn format_date(d: time::Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// Parses `YYYY-MM-DD` (a real calendar date).
pub fn parse_date(s: &str) -> Option<time::Date> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        s.get(r)
            .filter(|p| p.bytes().all(|c| c.is_ascii_digit()))?
            .parse()
            .ok()
    };
    let month = time::Month::try_from(num(5..7)? as u8).ok()?;
    time::Date::from_calendar_date(num(0..4)? as i32, month, num(8..10)? as u8).ok()
}

/// The UTC date of a Unix time in milliseconds.
pub fn date_of_ms(ms: i64) -> time::Date {
    let days = ms.div_euclid(86_400_000);
    time::Date::from_julian_day((days + 2_440_588) as i32).unwrap_or(time::Date::MIN)
}

/// Every named query, parsed once (the files are part of the binary; a unit test parses them all).
pub fn queries() -> &'static [NamedQuery] {
    static PARSED: OnceLock<Vec<NamedQuery>> = OnceLock::new();
    PARSED.get_or_init(|| {
        QUERY_FILES
            .iter()
            .filter_map(|(_, sql)| match parse_file(sql) {
                Ok(q) => Some(q),
                Err(e) => {
                    tracing::error!(error = %e, "a named query file is malformed and is left out");
                    None
                }
            })
            .collect()
    })
}

/// The named query `name`.
pub fn find(name: &str) -> Result<&'static NamedQuery, StatsError> {
    queries()
        .iter()
        .find(|q| q.name == name)
        .ok_or_else(|| StatsError::UnknownQuery(name.to_owned()))
}

/// The arguments every dashboard query takes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Args {
    pub site: String,
    #[serde(serialize_with = "ser_date")]
    pub from: time::Date,
    #[serde(serialize_with = "ser_date")]
    pub to: time::Date,
    pub limit: u32,
}

fn ser_date<S: serde::Serializer>(d: &time::Date, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_date(*d))
}

impl Args {
    /// Checks raw request values; `today` fills the defaults (the 30 days up to today).
    pub fn parse(
        site: Option<&str>,
        from: Option<&str>,
        to: Option<&str>,
        limit: Option<&str>,
        today: time::Date,
    ) -> Result<Self, StatsError> {
        let site = site
            .filter(|s| !s.is_empty())
            .ok_or_else(|| StatsError::BadParameter("parameter `site` is required".into()))?;
        let date = |name: &str, v: Option<&str>, default: time::Date| match v {
            None | Some("") => Ok(default),
            Some(v) => parse_date(v).ok_or_else(|| {
                StatsError::BadParameter(format!("parameter `{name}` must be a date YYYY-MM-DD"))
            }),
        };
        let to = date("to", to, today)?;
        let from = date(
            "from",
            from,
            to.checked_sub(time::Duration::days(29))
                .unwrap_or(time::Date::MIN),
        )?;
        if from > to {
            return Err(StatsError::BadParameter(
                "`from` must not be after `to`".into(),
            ));
        }
        if (to - from).whole_days() >= MAX_RANGE_DAYS {
            return Err(StatsError::BadParameter(format!(
                "the range may cover at most {MAX_RANGE_DAYS} days"
            )));
        }
        let limit = match limit {
            None | Some("") => 20,
            Some(v) => v
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| {
                    StatsError::BadParameter(format!(
                        "parameter `limit` must be a number from 1 to {MAX_LIMIT}"
                    ))
                })?,
        };
        Ok(Self {
            site: site.to_owned(),
            from,
            to,
            limit,
        })
    }

    /// The values for a query's placeholders.
    pub fn values(&self) -> HashMap<&'static str, Value> {
        HashMap::from([
            ("site", Value::String(self.site.clone())),
            ("from", Value::Date(self.from)),
            ("to", Value::Date(self.to)),
            ("limit", Value::UInt(self.limit as u64)),
        ])
    }
}

/// A query's answer.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Table {
    pub columns: Vec<String>,
    pub types: Vec<String>,
    pub rows: Vec<Vec<serde_json::Value>>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Stats(#[from] StatsError),
    #[error("ClickHouse: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
    #[error("unreadable result: {0}")]
    Decode(String),
}

/// Runs `q` with `values` and returns its columns and rows (numbers as JSON numbers).
pub async fn run(
    db: &Client,
    q: &NamedQuery,
    values: &HashMap<&str, Value>,
) -> Result<Table, RunError> {
    let mut cursor = query(db, q.sql, values)?
        // 64-bit counts as numbers: a count never comes near 2^53.
        .with_setting("output_format_json_quote_64bit_integers", "0")
        .fetch_bytes("JSONCompact")?;
    let bytes = cursor.collect().await?;
    parse_json_compact(&bytes)
}

/// Reads ClickHouse's `JSONCompact` output.
pub fn parse_json_compact(bytes: &[u8]) -> Result<Table, RunError> {
    #[derive(serde::Deserialize)]
    struct Meta {
        name: String,
        #[serde(rename = "type")]
        ty: String,
    }
    #[derive(serde::Deserialize)]
    struct Out {
        meta: Vec<Meta>,
        data: Vec<Vec<serde_json::Value>>,
    }
    let out: Out = serde_json::from_slice(bytes).map_err(|e| RunError::Decode(e.to_string()))?;
    Ok(Table {
        columns: out.meta.iter().map(|m| m.name.clone()).collect(),
        types: out.meta.into_iter().map(|m| m.ty).collect(),
        rows: out.data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> time::Date {
        parse_date(s).unwrap()
    }

    #[test]
    fn every_query_file_parses_and_declares_what_it_uses() {
        assert_eq!(queries().len(), QUERY_FILES.len());
        for ((file, _), q) in QUERY_FILES.iter().zip(queries()) {
            assert_eq!(q.name, *file, "a query is named after its file");
            assert!(!q.title.is_empty(), "{}", q.name);
            assert!(!q.description.is_empty(), "{}", q.name);
            assert!(!q.columns.is_empty(), "{}", q.name);
            for (p, _) in &q.params {
                assert!(
                    ["site", "from", "to", "limit"].contains(&p.as_str()),
                    "{}",
                    q.name
                );
            }
        }
        for sql in [
            DAILY_SUMMARY_SQL,
            SESSION_BREAKDOWN_SQL,
            DAILY_BREAKDOWN_SQL,
        ] {
            parse_file(sql).unwrap();
        }
        let names: std::collections::BTreeSet<_> = queries().iter().map(|q| &q.name).collect();
        assert_eq!(names.len(), queries().len(), "names are unique");
    }

    #[test]
    fn placeholders_become_escaped_client_side_parameters() {
        let values = HashMap::from([
            ("site", Value::String("x' OR 1=1 --".into())),
            ("from", Value::Date(d("2026-11-01"))),
            ("limit", Value::UInt(5)),
        ]);
        let (sql, bound) = bind(
            "SELECT '{not:String}', 'a?b' -- {nor:Date}\nWHERE site = {site:String} AND day >= {from:Date} LIMIT {limit:UInt32}",
            &values,
        )
        .unwrap();
        assert_eq!(
            sql,
            "SELECT '{not:String}', 'a??b' -- {nor:Date}\nWHERE site = ? AND day >= toDate(?) LIMIT ?"
        );
        assert_eq!(bound.len(), 3);
        // The crate escapes the string: the quote cannot end the literal.
        let q = query(&Client::default(), "SELECT {site:String}", &values).unwrap();
        assert!(q.sql_display().to_string().contains(r"'x\' OR 1=1 --'"));
    }

    #[test]
    fn wrong_or_missing_parameters_are_refused() {
        let values = HashMap::from([("site", Value::UInt(3))]);
        assert!(matches!(
            bind("SELECT {site:String}", &values),
            Err(StatsError::BadParameter(_))
        ));
        assert!(matches!(
            bind("SELECT {to:Date}", &values),
            Err(StatsError::BadParameter(_))
        ));
        let big = HashMap::from([("limit", Value::UInt(u64::MAX))]);
        assert!(bind("LIMIT {limit:UInt32}", &big).is_err());
        assert!(parse_file("-- name: x\n-- params: site String\nSELECT {other:String}").is_err());
        assert!(parse_file("-- name: x\n-- params: site Float64\nSELECT 1").is_err());
    }

    #[test]
    fn request_arguments_are_checked_and_defaulted() {
        let today = d("2026-11-30");
        let a = Args::parse(Some("shop"), None, None, None, today).unwrap();
        assert_eq!((a.from, a.to, a.limit), (d("2026-11-01"), today, 20));
        let a = Args::parse(
            Some("shop"),
            Some("2024-02-29"),
            Some("2024-03-01"),
            Some("1000"),
            today,
        )
        .unwrap();
        assert_eq!((a.from, a.limit), (d("2024-02-29"), 1000));
        for (from, to, limit) in [
            (Some("2025-02-29"), None, None),
            (Some("2026-1-01"), None, None),
            (Some("２０２６-11-01"), None, None),
            (Some("2026-12-01"), Some("2026-11-01"), None),
            (Some("2020-01-01"), Some("2026-11-01"), None),
            (None, None, Some("0")),
            (None, None, Some("1001")),
            (None, None, Some("-1")),
        ] {
            assert!(
                Args::parse(Some("shop"), from, to, limit, today).is_err(),
                "{from:?} {to:?} {limit:?}"
            );
        }
        assert!(Args::parse(None, None, None, None, today).is_err());
    }

    #[test]
    fn dates_of_unix_times() {
        assert_eq!(date_of_ms(0), d("1970-01-01"));
        assert_eq!(date_of_ms(951_782_400_000), d("2000-02-29"));
        assert_eq!(date_of_ms(-1), d("1969-12-31"));
        assert_eq!(format_date(d("2026-03-07")), "2026-03-07");
    }

    #[test]
    fn json_compact_results_are_read_with_numbers() {
        let t = parse_json_compact(
            br#"{"meta":[{"name":"path","type":"String"},{"name":"n","type":"UInt64"}],"data":[["/",3]],"rows":1}"#,
        )
        .unwrap();
        assert_eq!(t.columns, vec!["path", "n"]);
        assert_eq!(
            t.rows,
            vec![vec![serde_json::json!("/"), serde_json::json!(3)]]
        );
    }
}
