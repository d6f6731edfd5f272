//! The ClickHouse writer: records from the spool in, acknowledged INSERTs out. Mechanism only.
//!
//! It reads spooled records up to a row, byte or time limit, rewrites each as the RowBinary row
//! ClickHouse reads (`row::transcode`, without building the row) and sends them as one INSERT.
//! Only when ClickHouse acknowledges the INSERT does it acknowledge the records to the spool,
//! which then forgets them; a crash anywhere before that replays them at the next start.
//! Errors are classified: bad data (ClickHouse refuses the rows themselves) goes to a dead-letter
//! file and is counted, never retried; everything else is retried with backoff until it succeeds
//! or shutdown gives up, in which case the records simply stay in the spool.
//!
//! The batch limits are the crate's `Inserter`'s (rows, bytes, a period), but not its mechanism:
//! the `Inserter` forgets rows once streamed, and acknowledging the spool needs INSERT boundaries
//! that match records, with the records kept for the lookup, per-shard routing and dead letters.
//!
//! Exactly once: rows that may already be in ClickHouse (replayed after a restart, or re-sent after
//! an INSERT whose answer was lost) are looked up before they are sent again. INSERTs go out one at
//! a time in spool order and each lands whole or as a prefix of whole blocks, so what already
//! landed is a prefix of the rows: a binary search with primary-key point lookups finds it, and
//! only the rest is sent. The materialised views that count events therefore never count one twice
//! (the events table would collapse a copy by event id, but the views would not).

use std::io::Write;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clickhouse::Client;
use tokio::sync::watch;

use crate::metrics::{Metrics, ReasonLabel};
use crate::row::{self, EventRow, RowKey};
use crate::schema;
use crate::spool::{Next, Position, Reader};

pub const EVENTS_TABLE: &str = "events";

/// How often an open batch looks for newly durable records. A batch reaches its row or byte limit
/// at most this much later than when the records were there; 50 ms is ~20 looks a second against
/// ~600 commits a second under load.
const CATCH_UP_POLL: Duration = Duration::from_millis(50);

/// Limits of one INSERT and of retrying it.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    pub max_rows: u64,
    pub max_bytes: u64,
    pub period: Duration,
    /// Where refused rows go, one JSON object per line.
    pub dead_letter_dir: PathBuf,
    /// First retry delay; doubles up to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// After shutdown is asked for, how long delivery is still tried.
    pub flush_timeout: Duration,
}

/// Where rows go.
#[derive(Clone)]
pub enum Destination {
    /// A server made ready (version checked, schema applied) before the first INSERT and again
    /// after any failure, so footfall may start before ClickHouse does.
    Server {
        /// Client without a database, for the version check and migrations.
        server: Client,
        database: String,
        migrate: bool,
        layout: schema::Layout,
        /// With `insert = "local"` on a cluster: a client for each shard (its database set), in
        /// shard order; rows go to `events_local` of the shard the sharding key names.
        shards: Vec<Client>,
    },
    /// A database client used as it is (the crate's mock in unit tests).
    Database(Client),
}

/// What `/readyz` reads about delivery.
#[derive(Debug, Default)]
pub struct DeliveryState(AtomicU8);

impl DeliveryState {
    // 0, the default, is "connecting": nothing has been tried yet.
    const UP: u8 = 1;
    const DOWN: u8 = 2;

    /// "up", "down" or "connecting".
    pub fn label(&self) -> &'static str {
        match self.0.load(Ordering::Relaxed) {
            Self::UP => "up",
            Self::DOWN => "down",
            _ => "connecting",
        }
    }

    fn set(&self, v: u8) {
        self.0.store(v, Ordering::Relaxed);
    }
}

/// How a ClickHouse error is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The rows themselves are bad: set them aside, never retry.
    BadData,
    /// The server or the network: retry the same rows later.
    Retryable,
}

impl ErrorClass {
    pub fn label(self) -> &'static str {
        match self {
            ErrorClass::BadData => "bad_data",
            ErrorClass::Retryable => "retryable",
        }
    }
}

/// ClickHouse exception codes that mean the data cannot be inserted as it is.
const BAD_DATA_CODES: &[u32] = &[
    6,   // CANNOT_PARSE_TEXT
    26,  // CANNOT_PARSE_QUOTED_STRING
    27,  // CANNOT_PARSE_INPUT_ASSERTION_FAILED
    33,  // CANNOT_READ_ALL_DATA
    38,  // CANNOT_PARSE_DATE
    41,  // CANNOT_PARSE_DATETIME
    53,  // TYPE_MISMATCH
    69,  // ARGUMENT_OUT_OF_BOUND
    70,  // CANNOT_CONVERT_TYPE
    72,  // CANNOT_PARSE_NUMBER
    117, // INCORRECT_DATA
    131, // TOO_LARGE_STRING_SIZE
];

/// The `Code: N` of a ClickHouse exception message, if any.
pub fn exception_code(message: &str) -> Option<u32> {
    let rest = &message[message.find("Code: ")? + 6..];
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// Bad data or retry, for any error the crate returns.
pub fn classify(err: &clickhouse::error::Error) -> ErrorClass {
    use clickhouse::error::Error as E;
    match err {
        E::BadResponse(msg) => match exception_code(msg) {
            Some(code) if BAD_DATA_CODES.contains(&code) => ErrorClass::BadData,
            _ => ErrorClass::Retryable,
        },
        // Our own row could not be serialised: retrying cannot help.
        E::Custom(_) | E::SequenceMustHaveLength | E::InvalidUtf8Encoding(_) => ErrorClass::BadData,
        _ => ErrorClass::Retryable,
    }
}

/// Delivers the spool until it is closed and read to the end, or until shutdown gives up.
pub async fn run(
    dest: Destination,
    reader: Reader,
    cfg: WriterConfig,
    metrics: Metrics,
    state: Arc<DeliveryState>,
    shutdown: watch::Receiver<bool>,
) {
    let mut w = Writer {
        dest,
        db: None,
        reader,
        cfg,
        metrics,
        state,
        shutdown,
        give_up_at: None,
        unsure: false,
        validation: false,
        shard_map: None,
        spare: Spare::default(),
    };
    match w.deliver_all().await {
        Ok(()) => tracing::info!("writer stopped: every accepted event was delivered or set aside"),
        Err(Stop::GaveUp) => tracing::warn!(
            pending = w.reader.stats().pending_records.load(Ordering::Relaxed),
            "writer stopped before ClickHouse took everything; the rest stays in the spool for the next start"
        ),
        Err(Stop::Spool(e)) => tracing::error!(error = %e, "writer stopped: the spool cannot be read"),
    }
}

enum Stop {
    GaveUp,
    Spool(std::io::Error),
}

#[derive(Debug, thiserror::Error)]
enum SendError {
    #[error("{0}")]
    Connect(#[from] schema::SchemaError),
    #[error("{0}")]
    Insert(#[from] clickhouse::error::Error),
    #[error("looking up rows already delivered: {0}")]
    Lookup(clickhouse::error::Error),
}

/// Where a group of rows is inserted: through the main client (into `events`, the
/// `Distributed` table on a cluster), or straight into one shard's `events_local`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Main,
    Shard(usize),
}

/// Bytes per chunk of an INSERT's body, as the crate's own `Insert` sends them (each chunk is
/// compressed on its own when compression is on).
const CHUNK_BYTES: usize = 256 * 1024;

/// [`EventRow`]'s columns for an INSERT, quoted, in its RowBinary order.
static COLUMNS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let quoted: Vec<String> = <EventRow as clickhouse::Row>::COLUMN_NAMES
        .iter()
        .map(|c| format!("`{c}`"))
        .collect();
    quoted.join(",")
});

/// Sends the rows `rows` of `batch` as one INSERT into `table`, in chunks through the crate's
/// buffered insert (the mechanism its own `Insert` uses).
async fn insert(db: &Client, table: &str, batch: &Batch, rows: &[usize]) -> Result<(), SendError> {
    let sql = format!("INSERT INTO {table}({}) FORMAT RowBinary", *COLUMNS);
    let mut insert = db
        .insert_formatted_with(sql)
        .buffered_with_capacity(CHUNK_BYTES);
    for range in byte_runs(batch, rows) {
        for piece in batch.body[range].chunks(CHUNK_BYTES) {
            insert.write_buffered(piece);
            if insert.buf_len() >= CHUNK_BYTES {
                insert.flush().await?;
            }
        }
    }
    Ok(insert.end().await?)
}

/// The bytes of `rows` (ascending indices) in `batch.body`, neighbours joined into one range: a
/// whole batch going to one table is a single range.
fn byte_runs<'a>(batch: &'a Batch, rows: &'a [usize]) -> impl Iterator<Item = Range<usize>> + 'a {
    let mut i = 0;
    std::iter::from_fn(move || {
        let first = *rows.get(i)?;
        let mut last = first;
        i += 1;
        while rows.get(i) == Some(&(last + 1)) {
            last += 1;
            i += 1;
        }
        Some(batch.span(first).start..batch.span(last).end)
    })
}

/// How many leading `rows` of `batch` are already in `table`. What landed is always a prefix (see
/// the module doc), so a binary search needs about log2(rows) point lookups, each on the primary
/// key.
async fn landed_prefix(
    db: &Client,
    table: &str,
    batch: &Batch,
    rows: &[usize],
) -> Result<usize, clickhouse::error::Error> {
    let Some(last) = rows.len().checked_sub(1) else {
        return Ok(0);
    };
    let stored = |i: usize| is_stored(db, table, &batch.rows[rows[i]].record);
    if !stored(0).await? {
        return Ok(0);
    }
    if stored(last).await? {
        return Ok(rows.len());
    }
    // rows[lo] is stored, rows[hi] is not.
    let (mut lo, mut hi) = (0, last);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if stored(mid).await? {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(hi)
}

/// Whether the event of this spool record is in `table`: a lookup on the whole sorting key. A
/// record that postcard cannot decode (it was sent, so it was rewritten; only a string that is not
/// UTF-8 could do that) counts as not there: sending it again risks a copy, never a loss.
async fn is_stored(
    db: &Client,
    table: &str,
    record: &[u8],
) -> Result<bool, clickhouse::error::Error> {
    let Ok(row) = postcard::from_bytes::<EventRow>(record) else {
        return Ok(false);
    };
    let n: u64 = db
        .query(
            "SELECT count() FROM ? WHERE site = ? AND toDate(received_at) = toDate(toDateTime(?)) \
             AND received_at = toDateTime(?) AND visitor_id = unhex(?) AND event_id = toUUID(?)",
        )
        .bind(clickhouse::sql::Identifier(table))
        .bind(row.site.as_str())
        .bind(row.received_at)
        .bind(row.received_at)
        .bind(hex::encode(row.visitor_id))
        .bind(row.event_id.to_string())
        .fetch_one()
        .await?;
    Ok(n > 0)
}

/// Whether `database` has every migration this binary knows (any error reads as "no").
async fn schema_is_current(server: &Client, database: &str) -> bool {
    let db = server.clone().with_database(database);
    matches!(schema::current_version(&db).await, Ok(v) if v >= schema::latest_version())
}

/// The client for INSERTs and already-landed lookups through a `Distributed` table: each goes to
/// the same replica of each shard, the first healthy one in the cluster's order.
///
/// The lookup must see what the INSERT did. With the default random choice, the INSERT and each
/// point lookup of the search may each go to a different replica, and one that has not fetched
/// the part yet (fetches lag, and stop while ZooKeeper is away) says "not there": the search then
/// sees "first row there, last row missing", takes that for a partly landed INSERT and sends the
/// tail again, a new block stored twice (seen in the cluster test: 11 rows after a shard restart;
/// the lost-answers scenario there stores dozens with random choice). With one replica for both,
/// the lookup reads where the INSERT went. If that replica failed over in between, the lookup gives
/// one answer for the whole INSERT from the other; when that is "not there" the same block is sent
/// again whole and `ReplicatedMergeTree` drops it as one it already has. (Also refusing replicas
/// that are behind, `max_replica_delay_for_distributed_queries`, was tried: with every replica of
/// a shard behind, delivery stalled well past the lag, so it is not used.)
fn one_replica_per_shard(db: Client) -> Client {
    db.with_setting("load_balancing", "in_order")
}

/// How the cluster spreads `events` over its shards: each shard's weight, in shard order.
///
/// ClickHouse's `Distributed` engine gives shard `i` `weight[i]` consecutive slots and sends a row
/// to the shard owning slot `key % sum(weights)`; the key of `events` is
/// `reinterpretAsUInt32(visitor_id)`, the id's first 4 bytes little-endian.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardMap {
    slots: Vec<usize>,
    shards: usize,
}

impl ShardMap {
    /// From the weights of the shards in shard order (a zero weight takes no rows, as in
    /// ClickHouse). None when no shard has a weight.
    pub fn new(weights: &[u32]) -> Option<Self> {
        let slots: Vec<usize> = weights
            .iter()
            .enumerate()
            .flat_map(|(i, w)| std::iter::repeat_n(i, *w as usize))
            .collect();
        (!slots.is_empty()).then_some(Self {
            slots,
            shards: weights.len(),
        })
    }

    pub fn shards(&self) -> usize {
        self.shards
    }

    /// The shard (0-based, in shard order) that holds `row`.
    pub fn shard_of(&self, row: &RowKey) -> usize {
        let key = u32::from_le_bytes([
            row.visitor_id[0],
            row.visitor_id[1],
            row.visitor_id[2],
            row.visitor_id[3],
        ]);
        self.slots[key as usize % self.slots.len()]
    }
}

/// The shard weights of `cluster`, as the server the writer talks to knows them.
async fn shard_map(server: &Client, cluster: &str) -> Result<ShardMap, schema::SchemaError> {
    let weights: Vec<u32> = server
        .clone()
        .with_validation(false)
        .query(
            "SELECT toUInt32(any(shard_weight)) FROM system.clusters WHERE cluster = ? \
             GROUP BY shard_num ORDER BY shard_num",
        )
        .bind(cluster)
        .fetch_all()
        .await
        .map_err(|source| schema::SchemaError::Query {
            what: "reading the cluster's shards",
            source,
        })?;
    ShardMap::new(&weights).ok_or_else(|| {
        schema::SchemaError::Config(format!(
            "cluster {cluster:?} is not in this server's remote_servers (system.clusters)"
        ))
    })
}

/// One INSERT's worth of records.
struct Batch {
    /// The rows as ClickHouse reads them (RowBinary), back to back.
    body: Vec<u8>,
    rows: Vec<BatchRow>,
    records: u64,
    end: Option<Position>,
    /// Some records were written by an earlier run and may already be in ClickHouse.
    replayed: bool,
}

/// One row of a batch.
struct BatchRow {
    /// Where the row ends in the batch's body (it starts where the one before ends).
    end: usize,
    key: RowKey,
    /// The spool record: decoded only for the already-landed lookup and for dead letters.
    record: Vec<u8>,
}

/// The buffers of a batch, emptied, for the next one.
#[derive(Default)]
struct Spare {
    body: Vec<u8>,
    rows: Vec<BatchRow>,
}

impl Batch {
    /// The bytes of row `i` in `body`.
    fn span(&self, i: usize) -> Range<usize> {
        let start = i.checked_sub(1).map_or(0, |p| self.rows[p].end);
        start..self.rows[i].end
    }

    /// The buffers, emptied, for the next batch: kept while batches stay about as large, and let
    /// go once more than four times what this batch needed, so the memory of a burst is given
    /// back when the load drops.
    fn into_spare(mut self) -> Spare {
        fn keep<T>(mut v: Vec<T>, used: usize, floor: usize) -> Vec<T> {
            v.clear();
            if v.capacity() <= 4 * used.max(floor) {
                v
            } else {
                Vec::new()
            }
        }
        let (rows, bytes) = (self.rows.len(), self.body.len());
        Spare {
            body: keep(std::mem::take(&mut self.body), bytes, 256 * 1024),
            rows: keep(std::mem::take(&mut self.rows), rows, 256),
        }
    }
}

struct Writer {
    dest: Destination,
    /// The database client once the server has answered and the schema is in place.
    db: Option<Client>,
    reader: Reader,
    cfg: WriterConfig,
    metrics: Metrics,
    state: Arc<DeliveryState>,
    shutdown: watch::Receiver<bool>,
    give_up_at: Option<tokio::time::Instant>,
    /// Rows sent before may have landed without an acknowledgement reaching us (a replay after a
    /// restart, or an INSERT that failed in flight): look them up before sending again.
    unsure: bool,
    /// Whether the server can validate row types (decided by its version when connecting).
    validation: bool,
    /// On a cluster: how `events` is spread over the shards (read when connecting).
    shard_map: Option<ShardMap>,
    /// The last batch's buffers, emptied, for the next one. A batch is thousands of rows of a
    /// few hundred bytes each: growing fresh vectors for every batch cost page faults and copies
    /// (~4 % of footfall's CPU under load).
    spare: Spare,
}

impl Writer {
    async fn deliver_all(&mut self) -> Result<(), Stop> {
        loop {
            let (batch, closed) = self.next_batch().await.map_err(Stop::Spool)?;
            if let Some(end) = batch.end {
                self.unsure |= batch.replayed;
                if !batch.rows.is_empty() {
                    self.deliver(&batch).await?;
                }
                self.reader.ack(end, batch.records).map_err(Stop::Spool)?;
            }
            self.spare = batch.into_spare();
            if closed {
                return Ok(());
            }
        }
    }

    /// Reads records until a limit is reached, the period since the first one is over, or the
    /// spool is closed and drained (the `bool`).
    async fn next_batch(&mut self) -> std::io::Result<(Batch, bool)> {
        let spare = std::mem::take(&mut self.spare);
        let mut batch = Batch {
            body: spare.body,
            rows: spare.rows,
            records: 0,
            end: None,
            replayed: false,
        };
        let mut bytes = 0u64;
        // When the batch's first record came; its period runs from there.
        let mut opened: Option<tokio::time::Instant> = None;
        loop {
            // Once a batch is open, take what is durable without waiting for more: waiting on the
            // spool woke this thread at every commit (~600 a second under load, each a context
            // switch costing tens of µs on a VM) to read a few dozen records into a batch that is
            // sent seconds later anyway. `Idle` below looks again every `CATCH_UP_POLL` instead.
            // The opening instant is already past, so it means "do not wait" without a clock read.
            match self.reader.next(opened).await? {
                Next::Record(rec) => {
                    opened.get_or_insert_with(tokio::time::Instant::now);
                    batch.records += 1;
                    batch.end = Some(rec.end);
                    batch.replayed |= rec.replayed;
                    bytes += rec.payload.len() as u64;
                    match row::transcode(&rec.payload, &mut batch.body) {
                        Ok(key) => batch.rows.push(BatchRow {
                            end: batch.body.len(),
                            key,
                            record: rec.payload,
                        }),
                        Err(e) => self.dead_letter_record(&rec.payload, &e.to_string()),
                    }
                    if batch.records >= self.cfg.max_rows || bytes >= self.cfg.max_bytes {
                        return Ok((batch, false));
                    }
                }
                Next::Idle => {
                    let now = tokio::time::Instant::now();
                    match opened.map(|at| at + self.cfg.period) {
                        Some(at) if at > now => {
                            tokio::time::sleep_until(at.min(now + CATCH_UP_POLL)).await
                        }
                        _ => return Ok((batch, false)),
                    }
                }
                Next::Closed => return Ok((batch, true)),
            }
        }
    }

    /// Sends `rows` until ClickHouse takes them or refuses them as bad data: one INSERT, or one
    /// per shard when inserting into shard-local tables. Rows that may already be there are
    /// looked up first, and only the ones missing are sent.
    async fn deliver(&mut self, batch: &Batch) -> Result<(), Stop> {
        let mut backoff = self.cfg.min_backoff;
        // Grouping needs the cluster's shards, known once connected.
        let groups = loop {
            match self.database().await {
                Ok(_) => break self.route(batch),
                Err(err) => {
                    self.count_error(ErrorClass::Retryable);
                    self.mark_down();
                    tracing::warn!(rows = batch.rows.len(), error = %err, retry_in_ms = backoff.as_millis() as u64, "ClickHouse cannot take rows yet; they stay in the spool and are retried");
                    self.pause(backoff).await?;
                    backoff = (backoff * 2).min(self.cfg.max_backoff);
                }
            }
        };
        let mut done = vec![false; groups.len()];
        loop {
            let mut failure = None;
            for (i, (target, group)) in groups.iter().enumerate() {
                if done[i] {
                    continue;
                }
                match self.try_deliver(*target, batch, group).await {
                    Ok(n) => {
                        if n > 0 {
                            self.acknowledged(n as u64);
                        }
                        done[i] = true;
                    }
                    Err(e) => {
                        failure = Some((i, e));
                        break;
                    }
                }
            }
            let Some((i, err)) = failure else {
                // Every group is in: nothing of these rows can be in doubt any more.
                self.unsure = false;
                return Ok(());
            };
            let class = match &err {
                // Not reachable yet, or the schema cannot be applied now: try again later.
                SendError::Connect(_) | SendError::Lookup(_) => ErrorClass::Retryable,
                SendError::Insert(e) => classify(e),
            };
            self.count_error(class);
            if class == ErrorClass::BadData {
                let refused = &groups[i].1;
                tracing::error!(rows = refused.len(), error = %err, "ClickHouse refused the rows as bad data; writing them to the dead-letter file");
                self.dead_letter(&err.to_string(), batch, refused);
                done[i] = true;
                continue;
            }
            // The INSERT may have landed before the connection broke.
            self.unsure = true;
            self.mark_down();
            let pending: usize = groups
                .iter()
                .zip(&done)
                .filter(|(_, d)| !**d)
                .map(|((_, g), _)| g.len())
                .sum();
            tracing::warn!(rows = pending, error = %err, retry_in_ms = backoff.as_millis() as u64, "INSERT failed; the rows stay in the spool and are retried");
            self.pause(backoff).await?;
            backoff = (backoff * 2).min(self.cfg.max_backoff);
        }
    }

    /// The rows in groups, one INSERT each. On a cluster, one group per shard, whether it goes
    /// through the `Distributed` table or straight to the shard: an INSERT that fails may have
    /// landed on some shards only, and what landed of each shard's rows is a prefix of them, which
    /// is what the already-landed lookup relies on.
    fn route(&self, batch: &Batch) -> Vec<(Target, Vec<usize>)> {
        let all = 0..batch.rows.len();
        let (Some(map), Destination::Server { shards, .. }) = (&self.shard_map, &self.dest) else {
            return vec![(Target::Main, all.collect())];
        };
        let mut groups: Vec<Vec<usize>> = vec![Vec::new(); map.shards()];
        for i in all {
            groups[map.shard_of(&batch.rows[i].key)].push(i);
        }
        let local = !shards.is_empty();
        groups
            .into_iter()
            .enumerate()
            .filter(|(_, g)| !g.is_empty())
            .map(|(i, g)| {
                (
                    if local {
                        Target::Shard(i)
                    } else {
                        Target::Main
                    },
                    g,
                )
            })
            .collect()
    }

    /// One attempt: skip what already landed (when unsure), insert the rest of `rows` (indices
    /// into the batch). Returns the rows inserted.
    async fn try_deliver(
        &mut self,
        target: Target,
        batch: &Batch,
        rows: &[usize],
    ) -> Result<usize, SendError> {
        let main = self.database().await?;
        let (db, table) = match (target, &self.dest) {
            (Target::Shard(i), Destination::Server { shards, .. }) => (
                shards[i].clone().with_validation(self.validation),
                "events_local",
            ),
            _ => (main, EVENTS_TABLE),
        };
        let mut skip = 0;
        if self.unsure {
            skip = landed_prefix(&db, table, batch, rows)
                .await
                .map_err(SendError::Lookup)?;
            if skip > 0 {
                self.metrics.rows_already_delivered.inc_by(skip as u64);
                tracing::info!(
                    rows = skip,
                    "rows already in ClickHouse from an earlier attempt are not sent again"
                );
            }
            if skip == rows.len() {
                // Later rows may have landed too (the spool's position can lag by several INSERTs).
                return Ok(0);
            }
        }
        insert(&db, table, batch, &rows[skip..]).await?;
        Ok(rows.len() - skip)
    }

    /// Waits `backoff`, or less if shutdown's flush time runs out first.
    async fn pause(&mut self, backoff: Duration) -> Result<(), Stop> {
        let sleep = tokio::time::sleep(backoff);
        tokio::pin!(sleep);
        loop {
            if self.give_up_at.is_none() && *self.shutdown.borrow() {
                self.give_up_at = Some(tokio::time::Instant::now() + self.cfg.flush_timeout);
            }
            if let Some(at) = self.give_up_at {
                tokio::select! {
                    _ = &mut sleep => return Ok(()),
                    _ = tokio::time::sleep_until(at) => return Err(Stop::GaveUp),
                }
            }
            tokio::select! {
                _ = &mut sleep => return Ok(()),
                changed = self.shutdown.changed() => {
                    if changed.is_err() {
                        // The sender is gone without asking for shutdown: treat it as asked.
                        self.give_up_at = Some(tokio::time::Instant::now() + self.cfg.flush_timeout);
                    }
                }
            }
        }
    }

    /// The database client, connecting (and migrating) first when there is none.
    async fn database(&mut self) -> Result<Client, SendError> {
        if let Some(db) = &self.db {
            return Ok(db.clone());
        }
        let db = self.connect().await?;
        self.db = Some(db.clone());
        Ok(db)
    }

    /// Checks the server version (it decides row validation) and applies the schema.
    async fn connect(&mut self) -> Result<Client, schema::SchemaError> {
        let (server, database, migrate, layout) = match &self.dest {
            Destination::Database(db) => return Ok(db.clone()),
            Destination::Server {
                server,
                database,
                migrate,
                layout,
                ..
            } => (server, database, *migrate, layout),
        };
        let version = schema::server_version(server).await?;
        // Every reconnect comes here (after any failed INSERT). Migrating means DDL, and on a
        // cluster DDL ON CLUSTER, which waits for every host (for minutes when one is down): only
        // when the schema is missing or behind, as on a first start or a server replaced with an
        // empty one.
        if migrate && !schema_is_current(server, database).await {
            let report = schema::migrate(server, database, layout).await?;
            for m in &report.applied {
                tracing::info!(migration = %m, "applied schema migration");
            }
        }
        tracing::info!(%version, "ClickHouse answers; delivering");
        self.validation = version.supports_validation();
        let mut db = server
            .clone()
            .with_database(database)
            .with_validation(self.validation);
        if let schema::Layout::Cluster { name, .. } = layout {
            let map = shard_map(server, name).await?;
            if let Destination::Server { shards, .. } = &self.dest {
                if !shards.is_empty() && shards.len() != map.shards() {
                    return Err(schema::SchemaError::Config(format!(
                        "clickhouse.shard_urls names {} shards, cluster {name:?} has {}",
                        shards.len(),
                        map.shards()
                    )));
                }
            }
            self.shard_map = Some(map);
            // Through the Distributed table: acknowledged only once every shard has its rows, so
            // the spool forgets nothing a shard does not hold, and the landed-rows lookup sees them.
            db = one_replica_per_shard(db.with_setting("insert_distributed_sync", "1"));
        }
        Ok(db)
    }

    fn count_error(&self, class: ErrorClass) {
        self.metrics
            .insert_errors
            .get_or_create(&ReasonLabel {
                reason: class.label(),
            })
            .inc();
    }

    /// ClickHouse failed us: reconnect (and re-read the cluster's shards) before the next try.
    fn mark_down(&mut self) {
        self.db = None;
        self.state.set(DeliveryState::DOWN);
        self.metrics.clickhouse_up.set(0);
    }

    fn acknowledged(&mut self, n: u64) {
        self.metrics.rows_inserted.inc_by(n);
        self.metrics.inserts.inc();
        self.metrics.batch_rows.observe(n as f64);
        self.metrics.clickhouse_up.set(1);
        self.state.set(DeliveryState::UP);
    }

    /// Sets the rows `rows` of `batch` aside as ClickHouse refused them, decoded.
    fn dead_letter(&mut self, reason: &str, batch: &Batch, rows: &[usize]) {
        let mut decoded = Vec::with_capacity(rows.len());
        for &i in rows {
            let record = &batch.rows[i].record;
            match postcard::from_bytes::<EventRow>(record) {
                Ok(row) => decoded.push(row),
                Err(e) => self.dead_letter_record(record, &format!("{reason}; {e}")),
            }
        }
        self.metrics.rows_dead_lettered.inc_by(decoded.len() as u64);
        if let Err(e) = write_dead_letters(&self.cfg.dead_letter_dir, reason, &decoded) {
            tracing::error!(error = %e, rows = decoded.len(), "cannot write the dead-letter file");
        }
    }

    /// A spool record that does not decode as a row (written by another version): kept as hex.
    fn dead_letter_record(&mut self, payload: &[u8], reason: &str) {
        self.metrics.rows_dead_lettered.inc();
        tracing::error!(error = %reason, "a spool record does not decode as an event; writing it to the dead-letter file");
        let line = serde_json::json!({
            "reason": format!("undecodable spool record: {reason}"),
            "record_hex": hex::encode(payload),
        });
        if let Err(e) = append_dead_letter_lines(&self.cfg.dead_letter_dir, &[line]) {
            tracing::error!(error = %e, "cannot write the dead-letter file");
        }
    }
}

/// Appends `rows` with `reason` to the dead-letter file.
pub fn write_dead_letters(
    dir: &std::path::Path,
    reason: &str,
    rows: &[EventRow],
) -> std::io::Result<()> {
    let lines: Vec<_> = rows
        .iter()
        .map(|row| serde_json::json!({ "reason": reason, "row": row }))
        .collect();
    append_dead_letter_lines(dir, &lines)
}

fn append_dead_letter_lines(
    dir: &std::path::Path,
    lines: &[serde_json::Value],
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("events.jsonl"))?;
    let mut buf = Vec::new();
    for line in lines {
        serde_json::to_writer(&mut buf, line)?;
        buf.push(b'\n');
    }
    f.write_all(&buf)?;
    f.sync_data()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clickhouse::error::Error;
    use clickhouse::test::{handlers, Mock};

    /// A batch of `rows` rows of `row_bytes` bytes each, its buffers grown to `capacity` rows.
    fn batch_of(rows: usize, row_bytes: usize, capacity: usize) -> Batch {
        let mut batch = Batch {
            body: Vec::with_capacity(capacity * row_bytes),
            rows: Vec::with_capacity(capacity),
            records: rows as u64,
            end: None,
            replayed: false,
        };
        for _ in 0..rows {
            batch.body.resize(batch.body.len() + row_bytes, 0);
            batch.rows.push(BatchRow {
                end: batch.body.len(),
                key: RowKey {
                    visitor_id: [0; 16],
                },
                record: Vec::new(),
            });
        }
        batch
    }

    #[test]
    fn a_batch_hands_its_emptied_buffers_to_the_next_while_the_load_holds() {
        let spare = batch_of(10_000, 600, 16_384).into_spare();
        assert!(spare.rows.is_empty() && spare.body.is_empty());
        assert!(spare.rows.capacity() >= 16_384);
        assert!(spare.body.capacity() >= 16_384 * 600);
        // Small batches keep buffers of a few hundred rows whatever they used.
        let small = batch_of(3, 600, 1_024).into_spare();
        assert!(small.rows.capacity() >= 1_024);
        assert!(small.body.capacity() >= 1_024 * 600);
    }

    #[test]
    fn burst_buffers_are_given_back_when_batches_get_small() {
        let spare = batch_of(100, 600, 16_384).into_spare();
        assert_eq!(spare.rows.capacity(), 0);
        assert_eq!(spare.body.capacity(), 0);
    }

    #[test]
    fn rows_next_to_each_other_are_sent_as_one_run_of_bytes() {
        let batch = batch_of(6, 10, 6);
        assert_eq!(batch.span(0), 0..10);
        assert_eq!(batch.span(5), 50..60);
        let runs = |rows: &[usize]| {
            byte_runs(&batch, rows)
                .map(|r| (r.start, r.end))
                .collect::<Vec<_>>()
        };
        assert_eq!(runs(&[0, 1, 2, 3, 4, 5]), [(0, 60)]);
        assert_eq!(runs(&[2, 3, 4, 5]), [(20, 60)]);
        assert_eq!(runs(&[0, 2, 3, 5]), [(0, 10), (20, 40), (50, 60)]);
        assert_eq!(runs(&[]), []);
    }

    #[test]
    fn exception_codes_are_read_from_messages() {
        assert_eq!(exception_code("Code: 117. DB::Exception: bad"), Some(117));
        assert_eq!(
            exception_code("Code: 60, e.displayText() = DB::Exception: Table x doesn't exist"),
            Some(60)
        );
        assert_eq!(exception_code("nothing"), None);
    }

    #[test]
    fn classification() {
        let bad = Error::BadResponse("Code: 117. DB::Exception: Incorrect data".into());
        assert_eq!(classify(&bad), ErrorClass::BadData);
        let mismatch = Error::BadResponse("Code: 53. DB::Exception: Type mismatch".into());
        assert_eq!(classify(&mismatch), ErrorClass::BadData);
        let parts = Error::BadResponse("Code: 252. DB::Exception: Too many parts".into());
        assert_eq!(classify(&parts), ErrorClass::Retryable);
        let unknown_table = Error::BadResponse(
            "Code: 60. DB::Exception: Table footfall.events doesn't exist".into(),
        );
        assert_eq!(classify(&unknown_table), ErrorClass::Retryable);
        assert_eq!(classify(&Error::TimedOut), ErrorClass::Retryable);
        assert_eq!(
            classify(&Error::Network("refused".into())),
            ErrorClass::Retryable
        );
    }

    fn cfg(dir: &std::path::Path) -> WriterConfig {
        WriterConfig {
            max_rows: 2,
            max_bytes: 1 << 20,
            period: Duration::from_millis(50),
            dead_letter_dir: dir.to_owned(),
            min_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(4),
            flush_timeout: Duration::from_secs(5),
        }
    }

    fn row(n: u32) -> EventRow {
        EventRow {
            site: "demo".into(),
            seq: n,
            ..EventRow::default()
        }
    }

    fn with_key(key: u32) -> RowKey {
        let mut r = RowKey {
            visitor_id: [0; 16],
        };
        r.visitor_id[..4].copy_from_slice(&key.to_le_bytes());
        r
    }

    #[test]
    fn rows_go_to_the_shard_clickhouse_would_pick() {
        // Equal weights: key % shards.
        let even = ShardMap::new(&[1, 1]).unwrap();
        assert_eq!(even.shards(), 2);
        assert_eq!(even.shard_of(&with_key(10)), 0);
        assert_eq!(even.shard_of(&with_key(11)), 1);
        // The key is the id's first 4 bytes, little-endian (reinterpretAsUInt32).
        let mut r = with_key(0);
        r.visitor_id[..4].copy_from_slice(&[1, 0, 0, 0]);
        assert_eq!(even.shard_of(&r), 1);
        // Weights 2 and 1: slots 0 and 1 are shard 0's, slot 2 shard 1's.
        let weighted = ShardMap::new(&[2, 1]).unwrap();
        let picks: Vec<usize> = (0..6).map(|k| weighted.shard_of(&with_key(k))).collect();
        assert_eq!(picks, [0, 0, 1, 0, 0, 1]);
        // A shard of weight 0 takes nothing; no weight at all is no map.
        let skip = ShardMap::new(&[0, 1]).unwrap();
        assert!((0..10).all(|k| skip.shard_of(&with_key(k)) == 1));
        assert!(ShardMap::new(&[0, 0]).is_none());
        assert!(ShardMap::new(&[]).is_none());
    }

    fn spool_opts(dir: &std::path::Path) -> crate::spool::SpoolOptions {
        crate::spool::SpoolOptions {
            fsync: crate::spool::FsyncPolicy::Never,
            ..crate::spool::SpoolOptions::new(
                dir.join("spool"),
                &crate::config::SpoolConfig::default(),
            )
        }
    }

    /// A closed spool holding `rows`, and its reader.
    async fn spooled(dir: &std::path::Path, rows: &[EventRow], m: &Metrics) -> Reader {
        let (appender, reader) = crate::spool::open(
            spool_opts(dir),
            m.clone(),
            std::sync::Arc::new(crate::clock::SystemClock),
        )
        .unwrap();
        for r in rows {
            appender
                .append(postcard::to_allocvec(r).unwrap())
                .await
                .unwrap();
        }
        appender.close();
        reader
    }

    async fn run_against(mock: &Mock, dir: &std::path::Path, rows: &[EventRow]) -> Metrics {
        let (m, _r) = Metrics::standalone();
        let reader = spooled(dir, rows, &m).await;
        let client = Client::default().with_mock(mock);
        let (_tx, shutdown) = watch::channel(false);
        run(
            Destination::Database(client),
            reader,
            cfg(dir),
            m.clone(),
            Arc::new(DeliveryState::default()),
            shutdown,
        )
        .await;
        m
    }

    #[tokio::test]
    async fn a_refused_batch_is_set_aside_and_the_next_one_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let mock = Mock::new();
        mock.add(handlers::exception(117));
        let recording = mock.add(handlers::record());
        let m = run_against(&mock, dir.path(), &(0..4).map(row).collect::<Vec<_>>()).await;
        let delivered: Vec<EventRow> = recording.collect().await;
        assert_eq!(
            delivered.iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![2, 3]
        );
        assert_eq!(m.rows_dead_lettered.get(), 2);
        assert_eq!(m.rows_inserted.get(), 2);
        let dead = std::fs::read_to_string(dir.path().join("events.jsonl")).unwrap();
        assert_eq!(dead.lines().count(), 2);
        assert!(dead.contains("117"), "{dead}");
    }

    #[tokio::test]
    async fn a_server_error_is_retried_with_the_same_rows() {
        let dir = tempfile::tempdir().unwrap();
        let mock = Mock::new();
        mock.add(handlers::failure(http::StatusCode::SERVICE_UNAVAILABLE));
        // The failed INSERT may have landed: the first row is looked up, and is not there.
        mock.add(handlers::provide(vec![0u64]));
        let recording = mock.add(handlers::record());
        let m = run_against(&mock, dir.path(), &[row(7), row(8)]).await;
        let delivered: Vec<EventRow> = recording.collect().await;
        assert_eq!(
            delivered.iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![7, 8]
        );
        assert_eq!(m.rows_dead_lettered.get(), 0);
        assert!(!dir.path().join("events.jsonl").exists());
    }

    #[tokio::test]
    async fn after_a_lost_answer_only_the_rows_that_did_not_land_are_sent_again() {
        let dir = tempfile::tempdir().unwrap();
        let (m, _r) = Metrics::standalone();
        let reader = spooled(dir.path(), &(0..5).map(row).collect::<Vec<_>>(), &m).await;
        let mock = Mock::new();
        // The INSERT's answer is lost, but rows 0, 1 and 2 made it into the table.
        mock.add(handlers::failure(http::StatusCode::BAD_GATEWAY));
        // Binary search: row 0 is there, row 4 is not, row 2 is, row 3 is not.
        for found in [1u64, 0, 1, 0] {
            mock.add(handlers::provide(vec![found]));
        }
        let recording = mock.add(handlers::record());
        let (_tx, shutdown) = watch::channel(false);
        let mut c = cfg(dir.path());
        c.max_rows = 10;
        run(
            Destination::Database(Client::default().with_mock(&mock)),
            reader,
            c,
            m.clone(),
            Arc::new(DeliveryState::default()),
            shutdown,
        )
        .await;
        let delivered: Vec<EventRow> = recording.collect().await;
        assert_eq!(
            delivered.iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![3, 4]
        );
        assert_eq!(m.rows_already_delivered.get(), 3);
        assert_eq!(m.rows_inserted.get(), 2);
    }

    #[tokio::test]
    async fn an_undecodable_record_is_dead_lettered_as_hex_and_the_rest_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let (m, _r) = Metrics::standalone();
        let (appender, reader) = crate::spool::open(
            spool_opts(dir.path()),
            m.clone(),
            std::sync::Arc::new(crate::clock::SystemClock),
        )
        .unwrap();
        appender.append(vec![0xff; 3]).await.unwrap();
        appender
            .append(postcard::to_allocvec(&row(5)).unwrap())
            .await
            .unwrap();
        appender.close();
        let mock = Mock::new();
        let recording = mock.add(handlers::record());
        let (_tx, shutdown) = watch::channel(false);
        run(
            Destination::Database(Client::default().with_mock(&mock)),
            reader,
            cfg(dir.path()),
            m.clone(),
            Arc::new(DeliveryState::default()),
            shutdown,
        )
        .await;
        let delivered: Vec<EventRow> = recording.collect().await;
        assert_eq!(delivered.len(), 1);
        assert_eq!(m.rows_dead_lettered.get(), 1);
        let dead = std::fs::read_to_string(dir.path().join("events.jsonl")).unwrap();
        assert!(dead.contains("\"record_hex\":\"ffffff\""), "{dead}");
    }

    #[tokio::test]
    async fn shutdown_gives_up_after_the_flush_timeout_and_keeps_the_rows_spooled() {
        let dir = tempfile::tempdir().unwrap();
        let (m, _r) = Metrics::standalone();
        let reader = spooled(dir.path(), &[row(1)], &m).await;
        let mut mock = Mock::new();
        // The writer gives up after some of these; the rest are never asked for.
        mock.non_exhaustive();
        for _ in 0..1000 {
            mock.add(handlers::failure(http::StatusCode::SERVICE_UNAVAILABLE));
        }
        let (tx, shutdown) = watch::channel(true);
        let mut c = cfg(dir.path());
        c.flush_timeout = Duration::from_millis(100);
        let started = std::time::Instant::now();
        run(
            Destination::Database(Client::default().with_mock(&mock)),
            reader,
            c,
            m.clone(),
            Arc::new(DeliveryState::default()),
            shutdown,
        )
        .await;
        drop(tx);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(m.rows_inserted.get(), 0);
        // The record is still there for the next start.
        let (m2, _r2) = Metrics::standalone();
        let (a, mut again) = crate::spool::open(
            spool_opts(dir.path()),
            m2,
            std::sync::Arc::new(crate::clock::SystemClock),
        )
        .unwrap();
        a.close();
        assert!(matches!(again.next(None).await.unwrap(), Next::Record(_)));
    }
}
