//! The durable spool: every accepted event is on disk before its 202 and stays there until ClickHouse has acknowledged it.
//!
//! Layout under `<data_dir>/spool/`:
//! - `segment-<20 digits>.log`: a 16-byte header (`FFSPOOL\0`, payload format `u32`, 4 reserved
//!   bytes), then records `magic u32 | len u32 | appended_ms u64 | crc32 u32 | payload`, all
//!   little-endian; the CRC covers `len`, `appended_ms` and the payload.
//! - `ack`: the position just after the last record ClickHouse acknowledged.
//! - `unreadable/`: whole segments whose header this version cannot read, kept for a newer one.
//!
//! One committer thread appends. It takes every record that queued up while the previous
//! `fdatasync` ran and writes them with one `write` and one `fdatasync` (group commit), then
//! answers each waiting request (through its HTTP worker's relay, one message per worker per
//! commit, when the worker registered one). It publishes the durable end after every commit; the
//! reader never reads past it, so it never sees half a record of a live segment. Reading back is
//! the same code on a normal day and after a crash: the reader starts at `ack` and delivers what
//! follows.
//! A record whose magic, length or checksum is wrong (a torn write after power loss, a flipped
//! bit) is skipped by scanning for the next record magic, and counted; it never stops what follows.
//!
//! The live segment is written ahead with zeros, [`ZERO_AHEAD`] bytes at a time, and records
//! overwrite them: an `fdatasync` of bytes the file already has flushes the data alone, while one
//! after an append must also write the file's new size (measured on this project's VM: half the
//! time and CPU per commit, two context switches fewer). A sealed segment is cut back to its
//! records; one that a crash left with its zeros still on is read the same, because zero bytes
//! where a record would start are unused space, not damage.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self as std_mpsc, TryRecvError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};

use crate::clock::SharedClock;
use crate::metrics::Metrics;

const SEGMENT_MAGIC: &[u8; 8] = b"FFSPOOL\0";
const SEGMENT_HEADER_LEN: u64 = 16;
/// Payload encoding of this version: a postcard-encoded [`crate::row::EventRow`]. A change of the
/// row type needs a new number, so an older segment is never decoded as the wrong layout.
pub const PAYLOAD_FORMAT: u32 = 1;
const RECORD_MAGIC: [u8; 4] = *b"FFR1";
const RECORD_HEADER_LEN: usize = 20;
/// A record larger than this is corruption: no event comes near it.
pub const MAX_RECORD_BYTES: usize = 4 << 20;
/// Requests one group commit takes at most, so one fsync never holds a huge batch.
const MAX_GROUP: usize = 8192;
/// How far ahead of its records the live segment is written with zeros. One commit in a few
/// dozen under load writes this much more (2.5 ms instead of 0.25); 4 MiB made that one 17 ms.
const ZERO_AHEAD: u64 = 1 << 20;

/// A place in the spool: a segment and a byte offset in it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

/// When an appended record is forced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// Many requests share one `fdatasync`; each is answered after it (the default).
    Group,
    /// One `fdatasync` per request: the slowest, for comparison.
    Always,
    /// Written to the OS only: survives a crash of footfall, not of the machine.
    Never,
}

impl std::str::FromStr for FsyncPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "group" => Ok(Self::Group),
            "always" => Ok(Self::Always),
            "never" => Ok(Self::Never),
            _ => Err(format!("{s:?} is not one of group, always, never")),
        }
    }
}

/// How the spool is opened.
#[derive(Debug, Clone)]
pub struct SpoolOptions {
    pub dir: PathBuf,
    /// A segment is closed and a new one started once it is this large.
    pub segment_bytes: u64,
    /// Appends beyond this many bytes on disk are refused (503) until the writer catches up.
    pub max_bytes: u64,
    pub fsync: FsyncPolicy,
    /// How long the committer waits for more requests to share an fsync when none are queued.
    pub group_commit_wait: Duration,
    /// Requests waiting for the committer; beyond this the handler answers 503 at once.
    pub queue_capacity: usize,
}

impl SpoolOptions {
    /// The configured spool in `dir`.
    pub fn new(dir: PathBuf, config: &crate::config::SpoolConfig) -> Self {
        Self {
            dir,
            segment_bytes: config.segment_bytes,
            max_bytes: config.max_bytes,
            fsync: config.fsync,
            group_commit_wait: Duration::from_micros(config.group_commit_wait_us),
            queue_capacity: config.queue_capacity,
        }
    }
}

/// Why an event could not be made durable. Each answers 503 with `Retry-After`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    #[error("the spool is full")]
    Full,
    #[error("too many events are waiting for the disk")]
    Busy,
    #[error("the spool cannot be written: {0}")]
    Io(String),
    #[error("the spool is closed")]
    Closed,
}

impl AppendError {
    pub fn label(&self) -> &'static str {
        match self {
            AppendError::Full => "spool_full",
            AppendError::Busy => "spool_busy",
            AppendError::Io(_) => "spool_io",
            AppendError::Closed => "shutting_down",
        }
    }
}

/// Counters the committer, the reader and `/metrics` share.
#[derive(Debug, Default)]
pub struct SpoolStats {
    /// The configured cap on undelivered bytes.
    pub max_bytes: u64,
    /// Bytes in segment files on disk, but for the zeros written ahead in the live one.
    pub disk_bytes: AtomicU64,
    /// Offset of the acknowledged position in the oldest segment kept.
    pub acked_offset: AtomicU64,
    /// Records on disk and not yet acknowledged.
    pub pending_records: AtomicU64,
    /// Append time of the oldest record read and not yet acknowledged (0: none).
    pub oldest_unacked_ms: AtomicU64,
    /// The last append error and when it happened (ms), cleared by the next successful commit.
    pub last_error: Mutex<Option<(String, i64)>>,
}

impl SpoolStats {
    pub fn pending_bytes(&self) -> u64 {
        self.disk_bytes
            .load(Ordering::Relaxed)
            .saturating_sub(self.acked_offset.load(Ordering::Relaxed))
    }

    /// Copies the gauges into `metrics`, at scrape time, so ages keep growing while nothing moves.
    pub fn export(&self, metrics: &Metrics, now_ms: i64) {
        metrics
            .spool_pending_records
            .set(self.pending_records.load(Ordering::Relaxed) as i64);
        metrics.spool_pending_bytes.set(self.pending_bytes() as i64);
        metrics
            .spool_disk_bytes
            .set(self.disk_bytes.load(Ordering::Relaxed) as i64);
        metrics
            .spool_oldest_pending_seconds
            .set(self.oldest_pending_secs(now_ms));
    }

    pub fn oldest_pending_secs(&self, now_ms: i64) -> f64 {
        match self.oldest_unacked_ms.load(Ordering::Relaxed) {
            0 => 0.0,
            t => (now_ms - t as i64).max(0) as f64 / 1000.0,
        }
    }

    /// The last append error, if it happened within the last few seconds. It expires so that an
    /// instance taken out of a load balancer for a full disk is tried again once space may have
    /// returned: with no appends, nothing else would clear it.
    pub fn error(&self, now_ms: i64) -> Option<String> {
        const FRESH_MS: i64 = 5_000;
        let slot = self.last_error.lock().ok()?;
        match &*slot {
            Some((e, at)) if now_ms - at < FRESH_MS => Some(e.clone()),
            _ => None,
        }
    }

    fn set_error(&self, e: Option<(String, i64)>) {
        if let Ok(mut slot) = self.last_error.lock() {
            *slot = e;
        }
    }
}

/// The durable end, published by the committer after each commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Durable {
    pos: Position,
    /// No record will follow: the committer has stopped.
    closed: bool,
}

enum Msg {
    Append(Pending),
    Close,
}

/// A waiting request's answer channel.
type Waiter = oneshot::Sender<Result<(), AppendError>>;

/// A request on its way to a group: its record, its answer channel and its relay.
type Pending = (Vec<u8>, Waiter, Option<Relay>);

/// One commit's answers for the requests of one relay: they share the commit's outcome.
type Answers = (Vec<Waiter>, Result<(), AppendError>);

/// The relays registered so far, by index; the committer reads it once per commit.
type Relays = Arc<Mutex<Vec<mpsc::UnboundedSender<Answers>>>>;

/// A thread's relay of answers, registered with [`Appender::relay`].
///
/// Why: a `oneshot` answered from the committer wakes its request's task from another thread,
/// and an HTTP worker whose event loop was parked is woken once per answer (an `eventfd` write
/// each: under load ~0.8 per event, ~12 % of the committer's CPU). With a relay the committer
/// sends one message per worker per commit; the relay task, on the worker's own event loop,
/// answers that worker's requests there, where a wake is a push onto the local run queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Relay(usize);

/// Opens the spool in `opts.dir`: returns the appending half (for the HTTP handlers) and the
/// reading half (for the writer), positioned at the first unacknowledged record.
pub fn open(
    opts: SpoolOptions,
    metrics: Metrics,
    clock: SharedClock,
) -> io::Result<(Appender, Reader)> {
    std::fs::create_dir_all(&opts.dir)?;
    // Two processes appending to one spool would interleave records: the second one stops here.
    let lock = File::create(opts.dir.join("lock"))?;
    lock.try_lock().map_err(|_| {
        io::Error::new(
            io::ErrorKind::WouldBlock,
            "another footfall process is using this spool (data directory)",
        )
    })?;
    let stats = Arc::new(SpoolStats {
        max_bytes: opts.max_bytes,
        ..SpoolStats::default()
    });
    let acked = read_ack(&opts.dir)?;
    let mut segments = list_segments(&opts.dir)?;
    // Segments wholly before the acknowledged one were delivered: a crash came between the ack
    // and their removal.
    for &(id, _) in segments.iter().filter(|(id, _)| *id < acked.segment) {
        remove_segment(&opts.dir, id)?;
    }
    segments.retain(|(id, _)| *id >= acked.segment);
    // A header this version cannot read (a newer payload format, or garbage) sets the whole
    // segment aside, where a newer footfall can still deliver it.
    let mut readable = Vec::with_capacity(segments.len());
    for (id, len) in segments {
        if header_ok(&opts.dir, id)? {
            readable.push((id, len));
        } else {
            set_aside_unreadable(&opts.dir, id)?;
            metrics.spool_corrupt_records.inc();
            metrics.spool_corrupt_bytes.inc_by(len);
        }
    }
    let segments = readable;
    let start = match segments.first() {
        Some(&(id, _)) if id == acked.segment => Position {
            segment: id,
            offset: acked.offset.max(SEGMENT_HEADER_LEN),
        },
        Some(&(id, _)) => Position {
            segment: id,
            offset: SEGMENT_HEADER_LEN,
        },
        // Nothing on disk: reading starts with the committer's first segment.
        None => Position {
            segment: acked.segment + 1,
            offset: SEGMENT_HEADER_LEN,
        },
    };
    let disk: u64 = segments.iter().map(|(_, len)| len).sum();
    let next_id = segments.last().map_or(acked.segment, |(id, _)| *id) + 1;
    // On a full disk there may be no room for a new segment yet: start anyway, deliver what is
    // spooled (which frees space), and create it with the first append that fits.
    let file = match create_segment(&opts.dir, next_id) {
        Ok(f) => Some(f),
        Err(e) => {
            tracing::error!(error = %e, "cannot create a spool segment; delivering what is spooled and answering 503 until there is room");
            None
        }
    };
    stats.disk_bytes.store(
        disk + if file.is_some() {
            SEGMENT_HEADER_LEN
        } else {
            0
        },
        Ordering::Relaxed,
    );
    stats.acked_offset.store(
        if start.segment == acked.segment {
            acked.offset
        } else {
            0
        },
        Ordering::Relaxed,
    );
    let replay_end = Position {
        segment: next_id,
        offset: SEGMENT_HEADER_LEN,
    };
    let pending = count_records(&opts.dir, start, next_id)?;
    stats.pending_records.store(pending, Ordering::Relaxed);
    if pending > 0 {
        tracing::info!(
            records = pending,
            dir = %opts.dir.display(),
            "the spool holds undelivered events from an earlier run; they are delivered first"
        );
    }

    let (durable_tx, durable_rx) = watch::channel(Durable {
        pos: replay_end,
        closed: false,
    });
    let (tx, rx) = std_mpsc::sync_channel(opts.queue_capacity.max(1));
    let relays = Relays::default();
    let committer = Committer {
        dir: opts.dir.clone(),
        segment_bytes: opts.segment_bytes.max(SEGMENT_HEADER_LEN + 1),
        fsync: opts.fsync,
        wait: opts.group_commit_wait,
        file,
        segment: next_id,
        len: SEGMENT_HEADER_LEN,
        written: SEGMENT_HEADER_LEN,
        zeros: Vec::new(),
        buf: Vec::new(),
        stats: stats.clone(),
        metrics: metrics.clone(),
        durable: durable_tx,
        clock: clock.clone(),
        relays: relays.clone(),
        _lock: lock,
    };
    let thread = std::thread::Builder::new()
        .name("footfall-spool".into())
        .spawn(move || committer.run(rx))?;
    let appender = Appender {
        tx,
        relays,
        stats: stats.clone(),
        thread: Mutex::new(Some(thread)),
    };
    let reader = Reader {
        dir: opts.dir,
        durable: durable_rx,
        pos: start,
        file: None,
        buf: Vec::new(),
        consumed: 0,
        acked: start,
        removed_below: start.segment,
        replay_end,
        in_corrupt_run: false,
        unacked: 0,
        stats,
        metrics,
    };
    Ok((appender, reader))
}

/// The appending half: cheap to share between handlers.
pub struct Appender {
    tx: std_mpsc::SyncSender<Msg>,
    relays: Relays,
    stats: Arc<SpoolStats>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Appender {
    /// Appends one record and returns once it is durable by the configured policy.
    pub async fn append(&self, payload: Vec<u8>) -> Result<(), AppendError> {
        self.append_via(payload, None).await
    }

    /// [`Appender::append`], answered through `relay` (which must be the calling thread's own:
    /// another thread's relay would answer, but with a cross-thread wake again).
    pub async fn append_via(
        &self,
        payload: Vec<u8>,
        relay: Option<Relay>,
    ) -> Result<(), AppendError> {
        let (done, answer) = oneshot::channel();
        match self.tx.try_send(Msg::Append((payload, done, relay))) {
            Ok(()) => {}
            Err(std_mpsc::TrySendError::Full(_)) => return Err(AppendError::Busy),
            Err(std_mpsc::TrySendError::Disconnected(_)) => return Err(AppendError::Closed),
        }
        answer.await.unwrap_or(Err(AppendError::Closed))
    }

    /// Starts a relay on the current thread's event loop (an actix worker's `LocalSet`) and
    /// registers it with the committer. Must be called inside a `LocalSet` (as the App factory of
    /// each actix worker is); a relay lives as long as that event loop, and answers meant for a
    /// relay that has stopped are sent directly.
    pub fn relay(&self) -> Relay {
        let (tx, mut rx) = mpsc::unbounded_channel::<Answers>();
        tokio::task::spawn_local(async move {
            while let Some((waiting, result)) = rx.recv().await {
                for done in waiting {
                    let _ = done.send(result.clone());
                }
            }
        });
        let mut relays = self.relays.lock().unwrap_or_else(PoisonError::into_inner);
        relays.push(tx);
        Relay(relays.len() - 1)
    }

    pub fn stats(&self) -> &Arc<SpoolStats> {
        &self.stats
    }

    /// Commits what is queued, publishes the final end and stops the committer. Blocks.
    pub fn close(&self) {
        let _ = self.tx.send(Msg::Close);
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

struct Committer {
    dir: PathBuf,
    segment_bytes: u64,
    fsync: FsyncPolicy,
    wait: Duration,
    /// The live segment; `None` until it could be created.
    file: Option<File>,
    segment: u64,
    /// Where its records end.
    len: u64,
    /// Where its bytes end: `len` plus the zeros written ahead.
    written: u64,
    /// [`ZERO_AHEAD`] zero bytes, allocated when first needed.
    zeros: Vec<u8>,
    buf: Vec<u8>,
    stats: Arc<SpoolStats>,
    metrics: Metrics,
    durable: watch::Sender<Durable>,
    clock: SharedClock,
    relays: Relays,
    /// Held (with its advisory lock) for as long as the committer runs.
    _lock: File,
}

impl Committer {
    fn run(mut self, rx: std_mpsc::Receiver<Msg>) {
        let mut group: Vec<Pending> = Vec::new();
        let mut closing = false;
        while !closing {
            match rx.recv() {
                Ok(Msg::Append(pending)) => group.push(pending),
                Ok(Msg::Close) | Err(_) => break,
            }
            if self.fsync != FsyncPolicy::Always {
                closing = self.gather(&rx, &mut group);
            }
            self.commit(&mut group);
        }
        // Requests that raced with Close are still answered, so none waits forever.
        while let Ok(msg) = rx.try_recv() {
            if let Msg::Append(pending) = msg {
                group.push(pending);
                self.commit(&mut group);
            }
        }
        self.cut_zeros();
        self.durable.send_modify(|d| d.closed = true);
        tracing::debug!("spool committer stopped");
    }

    /// Takes every queued request, then sleeps out the rest of `wait` and takes what came
    /// meanwhile. Returns true when the spool is being closed.
    ///
    /// Why sleep rather than block on the channel: a receiver blocked in `recv_timeout` is woken
    /// by every send, so each request of the window cost its handler a futex wake and this
    /// thread a context switch (under load ~7 per fsync, 4 000 a second). A send to a receiver
    /// that is not blocked is only a push onto the queue.
    fn gather(&self, rx: &std_mpsc::Receiver<Msg>, group: &mut Vec<Pending>) -> bool {
        let deadline = Instant::now() + self.wait;
        loop {
            while group.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(Msg::Append(pending)) => group.push(pending),
                    Ok(Msg::Close) | Err(TryRecvError::Disconnected) => return true,
                    Err(TryRecvError::Empty) => break,
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if group.len() >= MAX_GROUP || left.is_zero() {
                return false;
            }
            std::thread::sleep(left);
        }
    }

    fn commit(&mut self, group: &mut Vec<Pending>) {
        if group.is_empty() {
            return;
        }
        let now = self.clock.now_ms().max(1) as u64;
        self.buf.clear();
        // The cap is on undelivered bytes: delivered ones in the live segment go with it at the
        // next rotation, so the disk holds at most `max_bytes` plus one segment.
        let mut projected = self.stats.pending_bytes();
        let mut waiting: Vec<(Waiter, Option<Relay>)> = Vec::with_capacity(group.len());
        for (payload, done, relay) in group.drain(..) {
            let frame = (RECORD_HEADER_LEN + payload.len()) as u64;
            if payload.len() > MAX_RECORD_BYTES || projected + frame > self.stats.max_bytes {
                self.metrics.spool_answer_wakeups.inc();
                let _ = done.send(Err(AppendError::Full));
                continue;
            }
            projected += frame;
            encode_record(&mut self.buf, now, &payload);
            waiting.push((done, relay));
        }
        if waiting.is_empty() {
            return;
        }
        let result = self.rotate_if_full().and_then(|()| self.write_durably());
        match result {
            Ok(()) => {
                let n = waiting.len() as u64;
                self.stats.pending_records.fetch_add(n, Ordering::Relaxed);
                self.metrics.spool_appended.inc_by(n);
                self.metrics.spool_group_records.observe(n as f64);
                self.stats.set_error(None);
                let pos = Position {
                    segment: self.segment,
                    offset: self.len,
                };
                self.durable.send_modify(|d| d.pos = pos);
                self.answer(waiting, Ok(()));
            }
            Err(e) => {
                let full = e.kind() == io::ErrorKind::StorageFull;
                tracing::error!(error = %e, events = waiting.len(), disk_full = full, "cannot append to the spool; answering 503");
                self.stats
                    .set_error(Some((e.to_string(), self.clock.now_ms())));
                let err = if full {
                    AppendError::Full
                } else {
                    AppendError::Io(e.to_string())
                };
                self.answer(waiting, Err(err));
            }
        }
    }

    /// Answers a commit's requests: one message per relay, each request without a working relay
    /// directly.
    fn answer(&self, waiting: Vec<(Waiter, Option<Relay>)>, result: Result<(), AppendError>) {
        let relays = self.relays.lock().unwrap_or_else(PoisonError::into_inner);
        let mut by_relay: Vec<Vec<Waiter>> = Vec::new();
        by_relay.resize_with(relays.len(), Vec::new);
        let mut direct = Vec::new();
        for (done, relay) in waiting {
            match relay.and_then(|Relay(i)| by_relay.get_mut(i)) {
                Some(batch) => batch.push(done),
                None => direct.push(done),
            }
        }
        for (tx, batch) in relays.iter().zip(by_relay) {
            if batch.is_empty() {
                continue;
            }
            self.metrics.spool_answer_wakeups.inc();
            // A relay whose event loop has stopped hands its answers back.
            if let Err(mpsc::error::SendError((batch, _))) = tx.send((batch, result.clone())) {
                direct.extend(batch);
            }
        }
        drop(relays);
        for done in direct {
            self.metrics.spool_answer_wakeups.inc();
            let _ = done.send(result.clone());
        }
    }

    /// Writes `buf` and forces it to disk; on failure the segment is cut back to its last good end.
    fn write_durably(&mut self) -> io::Result<()> {
        let before = self.len;
        let end = before + self.buf.len() as u64;
        let started = Instant::now();
        // Not past where the segment rotates: the zeros would only be cut off again.
        let ahead = if end > self.written {
            ZERO_AHEAD.min(self.segment_bytes.saturating_sub(end)) as usize
        } else {
            0
        };
        if self.zeros.len() < ahead {
            self.zeros = vec![0; ZERO_AHEAD as usize];
        }
        let Some(file) = self.file.as_mut() else {
            return Err(io::Error::other("no spool segment"));
        };
        let result = file.write_all_at(&self.buf, before).and_then(|()| {
            // The file's size changes only here, once per `ZERO_AHEAD` bytes; the
            // `fdatasync` below makes the new size durable with the records.
            let mut ahead = ahead as u64;
            if ahead > 0
                && file
                    .write_all_at(&self.zeros[..ahead as usize], end)
                    .is_err()
            {
                // The zeros only save time: on a disk too full for them, records are appended.
                file.set_len(end)?;
                ahead = 0;
            }
            self.written = self.written.max(end + ahead);
            if self.fsync != FsyncPolicy::Never {
                file.sync_data()?;
                self.metrics.spool_fsyncs.inc();
            }
            Ok(())
        });
        match result {
            Ok(()) => {
                self.metrics
                    .spool_commit_seconds
                    .observe(started.elapsed().as_secs_f64());
                let n = self.buf.len() as u64;
                self.len += n;
                self.stats.disk_bytes.fetch_add(n, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                // Cutting the file back keeps a half-written group from sitting in front of the
                // next one. If even that fails, start a new segment next time: the reader skips
                // the garbage at the end of this one by its checksums.
                match file.set_len(before) {
                    Ok(()) => self.written = before,
                    Err(cut) => {
                        tracing::error!(error = %cut, "cannot cut the spool segment back; starting a new one");
                        self.len = self.segment_bytes;
                    }
                }
                Err(e)
            }
        }
    }

    /// Cuts the zeros written ahead off the live segment, once no record will follow them there.
    /// Not forced to disk: after a crash the zeros may still be there, and are read as unused.
    fn cut_zeros(&mut self) {
        if self.written == self.len {
            return;
        }
        if let Some(file) = &self.file {
            match file.set_len(self.len) {
                Ok(()) => self.written = self.len,
                Err(e) => {
                    tracing::warn!(error = %e, segment = self.segment, "cannot cut the zeros off a spool segment; they are read as unused space");
                    // They stay on disk, and removing the segment subtracts its whole size.
                    self.stats
                        .disk_bytes
                        .fetch_add(self.written - self.len, Ordering::Relaxed);
                    self.written = self.len;
                }
            }
        }
    }

    fn rotate_if_full(&mut self) -> io::Result<()> {
        if self.file.is_none() {
            // The segment announced at open could not be created then: try again.
            self.file = Some(create_segment(&self.dir, self.segment)?);
            self.len = SEGMENT_HEADER_LEN;
            self.written = SEGMENT_HEADER_LEN;
            self.stats
                .disk_bytes
                .fetch_add(SEGMENT_HEADER_LEN, Ordering::Relaxed);
            return Ok(());
        }
        if self.len < self.segment_bytes {
            return Ok(());
        }
        let next = self.segment + 1;
        let new = create_segment(&self.dir, next)?;
        self.cut_zeros();
        self.file = Some(new);
        self.segment = next;
        self.len = SEGMENT_HEADER_LEN;
        self.written = SEGMENT_HEADER_LEN;
        self.stats
            .disk_bytes
            .fetch_add(SEGMENT_HEADER_LEN, Ordering::Relaxed);
        Ok(())
    }
}

fn encode_record(buf: &mut Vec<u8>, appended_ms: u64, payload: &[u8]) {
    let len = payload.len() as u32;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&len.to_le_bytes());
    crc.update(&appended_ms.to_le_bytes());
    crc.update(payload);
    buf.extend_from_slice(&RECORD_MAGIC);
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&appended_ms.to_le_bytes());
    buf.extend_from_slice(&crc.finalize().to_le_bytes());
    buf.extend_from_slice(payload);
}

/// What the bytes at the start of a buffer are.
#[derive(Debug, PartialEq, Eq)]
enum Frame {
    Record {
        appended_ms: u64,
        len: usize,
    },
    /// Not a record: skip this many bytes (to the next place a record magic appears).
    Corrupt {
        skip: usize,
    },
    /// Zeros written ahead and not yet (or never) overwritten: skip this many bytes.
    Unused {
        skip: usize,
    },
}

/// Reads the frame at the start of `buf`, which extends to the end of what may be read; a frame
/// that would extend past it is corrupt (a torn write, or a damaged length).
fn parse_frame(buf: &[u8]) -> Frame {
    let corrupt = || Frame::Corrupt {
        skip: buf
            .get(1..)
            .and_then(|rest| memchr::memmem::find(rest, &RECORD_MAGIC))
            .map_or(buf.len().max(1), |i| i + 1),
    };
    if buf.first() == Some(&0) {
        // A record starts with its magic, never a zero byte.
        return Frame::Unused {
            skip: buf.iter().position(|&b| b != 0).unwrap_or(buf.len()),
        };
    }
    if buf.len() < RECORD_HEADER_LEN || buf[..4] != RECORD_MAGIC {
        return corrupt();
    }
    let word = |at: usize| u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
    let len = word(4) as usize;
    if len > MAX_RECORD_BYTES || buf.len() < RECORD_HEADER_LEN + len {
        return corrupt();
    }
    let mut ms = [0u8; 8];
    ms.copy_from_slice(&buf[8..16]);
    let mut crc = crc32fast::Hasher::new();
    crc.update(&buf[4..16]);
    crc.update(&buf[RECORD_HEADER_LEN..RECORD_HEADER_LEN + len]);
    if crc.finalize() != word(16) {
        return corrupt();
    }
    Frame::Record {
        appended_ms: u64::from_le_bytes(ms),
        len: RECORD_HEADER_LEN + len,
    }
}

/// One record read back.
#[derive(Debug)]
pub struct Record {
    pub payload: Vec<u8>,
    pub appended_ms: u64,
    /// The position just after it: acknowledging it means acknowledging up to here.
    pub end: Position,
    /// Written by an earlier run and not acknowledged then: it may already be in ClickHouse.
    pub replayed: bool,
}

/// What the reader has next.
#[derive(Debug)]
pub enum Next {
    Record(Record),
    /// Nothing new before the deadline.
    Idle,
    /// The spool is closed and everything in it has been read.
    Closed,
}

/// The reading half, owned by the writer.
pub struct Reader {
    dir: PathBuf,
    durable: watch::Receiver<Durable>,
    /// Where the next unread byte is.
    pos: Position,
    file: Option<(u64, File)>,
    /// Bytes read from `pos` onward; `consumed` of them already parsed.
    buf: Vec<u8>,
    consumed: usize,
    acked: Position,
    removed_below: u64,
    /// Records before this position were written by an earlier run.
    replay_end: Position,
    in_corrupt_run: bool,
    /// Records handed out and not yet acknowledged.
    unacked: u64,
    stats: Arc<SpoolStats>,
    metrics: Metrics,
}

impl Reader {
    /// The next record, waiting for one until `deadline` (for ever when `None`).
    pub async fn next(&mut self, deadline: Option<tokio::time::Instant>) -> io::Result<Next> {
        loop {
            if self.consumed < self.buf.len() {
                let rest = &self.buf[self.consumed..];
                match parse_frame(rest) {
                    Frame::Record { appended_ms, len } => {
                        let payload = rest[RECORD_HEADER_LEN..len].to_vec();
                        self.advance(len);
                        self.in_corrupt_run = false;
                        let replayed = self.pos <= self.replay_end;
                        if replayed {
                            self.metrics.spool_replayed.inc();
                        }
                        if self.unacked == 0 {
                            self.stats
                                .oldest_unacked_ms
                                .store(appended_ms.max(1), Ordering::Relaxed);
                        }
                        self.unacked += 1;
                        return Ok(Next::Record(Record {
                            payload,
                            appended_ms,
                            end: self.pos,
                            replayed,
                        }));
                    }
                    Frame::Corrupt { skip } => {
                        self.skip_corrupt(skip);
                        continue;
                    }
                    Frame::Unused { skip } => {
                        self.advance(skip);
                        continue;
                    }
                }
            }
            let durable = *self.durable.borrow_and_update();
            let sealed = self.pos.segment < durable.pos.segment;
            let limit = if sealed {
                self.segment_len()?
            } else {
                durable.pos.offset
            };
            if self.pos.offset < limit {
                self.fill(limit)?;
                continue;
            }
            if sealed {
                self.next_segment(durable.pos.segment)?;
                continue;
            }
            if durable.closed {
                return Ok(Next::Closed);
            }
            let changed = self.durable.changed();
            match deadline {
                None => {
                    if changed.await.is_err() {
                        return Ok(Next::Closed);
                    }
                }
                Some(at) => match tokio::time::timeout_at(at, changed).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return Ok(Next::Closed),
                    Err(_) => return Ok(Next::Idle),
                },
            }
        }
    }

    fn skip_corrupt(&mut self, skip: usize) {
        if !self.in_corrupt_run {
            self.metrics.spool_corrupt_records.inc();
            tracing::warn!(
                segment = self.pos.segment,
                offset = self.pos.offset,
                "skipping a corrupt or torn spool record"
            );
        }
        self.in_corrupt_run = true;
        self.metrics.spool_corrupt_bytes.inc_by(skip as u64);
        self.advance(skip);
    }

    /// Moves past `n` parsed bytes of the buffer.
    fn advance(&mut self, n: usize) {
        self.consumed += n;
        self.pos.offset += n as u64;
    }

    fn segment_file(&mut self) -> io::Result<&File> {
        let id = self.pos.segment;
        if self.file.as_ref().map(|(i, _)| *i) != Some(id) {
            self.file = Some((id, File::open(segment_path(&self.dir, id))?));
        }
        match &self.file {
            Some((_, f)) => Ok(f),
            None => Err(io::Error::other("no segment open")),
        }
    }

    fn segment_len(&mut self) -> io::Result<u64> {
        Ok(self.segment_file()?.metadata()?.len())
    }

    /// Reads `[pos, limit)` of the current segment into the buffer.
    fn fill(&mut self, limit: u64) -> io::Result<()> {
        let want = (limit - self.pos.offset) as usize;
        let start = self.pos.offset;
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        buf.resize(want, 0);
        let file = self.segment_file()?;
        file.read_exact_at(&mut buf, start)?;
        self.buf = buf;
        self.consumed = 0;
        Ok(())
    }

    /// Moves to the oldest readable segment after the current one.
    fn next_segment(&mut self, newest: u64) -> io::Result<()> {
        self.in_corrupt_run = false;
        self.buf.clear();
        self.consumed = 0;
        self.file = None;
        for (id, _) in list_segments(&self.dir)? {
            if id <= self.pos.segment {
                continue;
            }
            self.pos = Position {
                segment: id,
                offset: SEGMENT_HEADER_LEN,
            };
            return Ok(());
        }
        self.pos = Position {
            segment: newest,
            offset: SEGMENT_HEADER_LEN,
        };
        Ok(())
    }

    /// Marks everything up to `upto` delivered: persists the position and removes finished
    /// segments. `records` is how many records that covers.
    pub fn ack(&mut self, upto: Position, records: u64) -> io::Result<()> {
        if upto <= self.acked {
            return Ok(());
        }
        self.acked = upto;
        self.unacked = self.unacked.saturating_sub(records);
        let _ =
            self.stats
                .pending_records
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| {
                    Some(p.saturating_sub(records))
                });
        if self.unacked == 0 {
            self.stats.oldest_unacked_ms.store(0, Ordering::Relaxed);
        }
        if upto.segment > self.removed_below {
            for (id, len) in list_segments(&self.dir)? {
                if id < upto.segment {
                    remove_segment(&self.dir, id)?;
                    self.stats.disk_bytes.fetch_sub(len, Ordering::Relaxed);
                }
            }
            self.removed_below = upto.segment;
        }
        self.stats
            .acked_offset
            .store(upto.offset, Ordering::Relaxed);
        // After the removals, so a full disk has room for it. Failing to record the position
        // only means replaying (and collapsing) some rows after a restart: not a reason to stop.
        if let Err(e) = write_ack(&self.dir, upto) {
            tracing::warn!(error = %e, "cannot record the spool's delivered position; a restart will replay some events");
        }
        Ok(())
    }

    pub fn stats(&self) -> &Arc<SpoolStats> {
        &self.stats
    }
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("segment-{id:020}.log"))
}

/// Segment ids and sizes, oldest first.
fn list_segments(dir: &Path) -> io::Result<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(id) = name
            .to_str()
            .and_then(|n| n.strip_prefix("segment-"))
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        out.push((id, entry.metadata()?.len()));
    }
    out.sort_unstable();
    Ok(out)
}

fn create_segment(dir: &Path, id: u64) -> io::Result<File> {
    let path = segment_path(dir, id);
    // Not `append`: records are written at their offset, over zeros written ahead.
    let mut file = OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(&path)?;
    let mut header = [0u8; SEGMENT_HEADER_LEN as usize];
    header[..8].copy_from_slice(SEGMENT_MAGIC);
    header[8..12].copy_from_slice(&PAYLOAD_FORMAT.to_le_bytes());
    let written = file.write_all(&header).and_then(|()| file.sync_all());
    if let Err(e) = written {
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    // The new name must survive a power loss too.
    File::open(dir)?.sync_all()?;
    Ok(file)
}

fn header_ok(dir: &Path, id: u64) -> io::Result<bool> {
    let file = File::open(segment_path(dir, id))?;
    let mut header = [0u8; SEGMENT_HEADER_LEN as usize];
    if file.read_exact_at(&mut header, 0).is_err() {
        return Ok(false);
    }
    Ok(&header[..8] == SEGMENT_MAGIC && header[8..12] == PAYLOAD_FORMAT.to_le_bytes())
}

fn set_aside_unreadable(dir: &Path, id: u64) -> io::Result<()> {
    let to = dir.join("unreadable");
    std::fs::create_dir_all(&to)?;
    let name = format!("segment-{id:020}.log");
    tracing::error!(
        segment = id,
        "a spool segment has a header this version cannot read; moved to {}",
        to.join(&name).display()
    );
    std::fs::rename(segment_path(dir, id), to.join(name))
}

fn remove_segment(dir: &Path, id: u64) -> io::Result<()> {
    match std::fs::remove_file(segment_path(dir, id)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn read_ack(dir: &Path) -> io::Result<Position> {
    let text = match std::fs::read_to_string(dir.join("ack")) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Position::default()),
        Err(e) => return Err(e),
    };
    let mut parts = text.split_whitespace().map(str::parse::<u64>);
    match (parts.next(), parts.next()) {
        (Some(Ok(segment)), Some(Ok(offset))) => Ok(Position { segment, offset }),
        _ => {
            // A damaged ack file costs duplicates (collapsed by event id), never a loss.
            tracing::warn!("the spool's ack file is unreadable; replaying everything in the spool");
            Ok(Position::default())
        }
    }
}

/// Written by rename, without fsync: losing the newest ack only means replaying rows that
/// ClickHouse collapses by event id.
fn write_ack(dir: &Path, pos: Position) -> io::Result<()> {
    let tmp = dir.join("ack.tmp");
    std::fs::write(&tmp, format!("{} {}\n", pos.segment, pos.offset))?;
    std::fs::rename(tmp, dir.join("ack"))
}

/// Counts the records from `start` to the end of the segments before `until`, for the pending
/// gauge at start-up.
fn count_records(dir: &Path, start: Position, until: u64) -> io::Result<u64> {
    let mut n = 0;
    for (id, _) in list_segments(dir)? {
        if id < start.segment || id >= until {
            continue;
        }
        let bytes = std::fs::read(segment_path(dir, id))?;
        let mut at = if id == start.segment {
            start.offset
        } else {
            SEGMENT_HEADER_LEN
        } as usize;
        while at < bytes.len() {
            match parse_frame(&bytes[at..]) {
                Frame::Record { len, .. } => {
                    n += 1;
                    at += len;
                }
                Frame::Corrupt { skip } | Frame::Unused { skip } => at += skip,
            }
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn opts(dir: &Path) -> SpoolOptions {
        SpoolOptions {
            segment_bytes: 1 << 20,
            ..SpoolOptions::new(dir.to_owned(), &crate::config::SpoolConfig::default())
        }
    }

    fn open_at(o: SpoolOptions) -> (Appender, Reader, Metrics) {
        let (m, _r) = Metrics::standalone();
        let (a, r) = open(o, m.clone(), Arc::new(ManualClock::new(1_700_000_000_000))).unwrap();
        (a, r, m)
    }

    fn soon() -> Option<tokio::time::Instant> {
        Some(tokio::time::Instant::now() + Duration::from_millis(50))
    }

    /// Reads until idle or closed; returns payloads and the last end position.
    async fn drain(r: &mut Reader) -> (Vec<Vec<u8>>, Option<Position>) {
        let mut out = Vec::new();
        let mut end = None;
        while let Next::Record(rec) = r.next(soon()).await.unwrap() {
            out.push(rec.payload);
            end = Some(rec.end);
        }
        (out, end)
    }

    fn payload(i: u32) -> Vec<u8> {
        format!("event number {i} with some padding to look like a row").into_bytes()
    }

    #[test]
    fn frames_round_trip_and_any_damage_is_detected() {
        let mut buf = Vec::new();
        encode_record(&mut buf, 42, b"hello");
        assert_eq!(
            parse_frame(&buf),
            Frame::Record {
                appended_ms: 42,
                len: RECORD_HEADER_LEN + 5
            }
        );
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x20;
            assert!(
                matches!(parse_frame(&bad), Frame::Corrupt { .. }),
                "flip at byte {i} went unnoticed"
            );
        }
        for cut in 0..buf.len() {
            assert!(matches!(parse_frame(&buf[..cut]), Frame::Corrupt { .. }));
        }
    }

    #[test]
    fn a_corrupt_region_is_skipped_to_the_next_record_magic() {
        let mut buf = b"garbage!".to_vec();
        encode_record(&mut buf, 1, b"x");
        assert_eq!(parse_frame(&buf), Frame::Corrupt { skip: 8 });
    }

    #[tokio::test]
    async fn appended_records_are_read_back_in_order_and_acked_ones_are_not_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let (a, mut r, m) = open_at(opts(dir.path()));
        for i in 0..100 {
            a.append(payload(i)).await.unwrap();
        }
        let (got, end) = drain(&mut r).await;
        assert_eq!(got, (0..100).map(payload).collect::<Vec<_>>());
        assert_eq!(a.stats().pending_records.load(Ordering::Relaxed), 100);
        r.ack(end.unwrap(), 100).unwrap();
        assert_eq!(a.stats().pending_records.load(Ordering::Relaxed), 0);
        a.append(payload(100)).await.unwrap();
        a.close();
        assert!(m.spool_fsyncs.get() >= 1);
        drop(r);

        let (a, mut r, m) = open_at(opts(dir.path()));
        let (got, _) = drain(&mut r).await;
        assert_eq!(
            got,
            vec![payload(100)],
            "only the unacknowledged record comes back"
        );
        assert_eq!(m.spool_replayed.get(), 1);
        assert_eq!(a.stats().pending_records.load(Ordering::Relaxed), 1);
        a.close();
    }

    #[tokio::test]
    async fn records_overwrite_zeros_written_ahead_so_a_commit_rarely_changes_the_files_size() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts(dir.path());
        o.segment_bytes = 4 * ZERO_AHEAD;
        let (a, mut r, _m) = open_at(o);
        let frame = (RECORD_HEADER_LEN + payload(0).len()) as u64;
        let size = || list_segments(dir.path()).unwrap()[0].1;
        a.append(payload(0)).await.unwrap();
        let ahead = SEGMENT_HEADER_LEN + frame + ZERO_AHEAD;
        assert_eq!(size(), ahead);
        for i in 1..20 {
            a.append(payload(i)).await.unwrap();
        }
        assert_eq!(size(), ahead, "the next records went over the zeros");
        let (got, _) = drain(&mut r).await;
        assert_eq!(got, (0..20).map(payload).collect::<Vec<_>>());
        a.close();
        let records: usize = (0..20).map(|i| RECORD_HEADER_LEN + payload(i).len()).sum();
        assert_eq!(
            size(),
            SEGMENT_HEADER_LEN + records as u64,
            "closing cuts the zeros off"
        );
    }

    #[tokio::test]
    async fn a_sealed_segment_is_cut_back_to_its_records() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts(dir.path());
        o.segment_bytes = 4 * ZERO_AHEAD;
        let (a, _r, _m) = open_at(o);
        let big = vec![7u8; 300_000];
        for _ in 0..15 {
            a.append(big.clone()).await.unwrap();
        }
        let segs = list_segments(dir.path()).unwrap();
        assert_eq!(segs.len(), 2);
        let frame = (RECORD_HEADER_LEN + big.len()) as u64;
        assert_eq!(segs[0].1, SEGMENT_HEADER_LEN + 14 * frame);
        a.close();
    }

    #[tokio::test]
    async fn zeros_a_crash_left_after_the_records_are_unused_space_not_damage() {
        let dir = tempfile::tempdir().unwrap();
        let (a, r, _m) = open_at(opts(dir.path()));
        for i in 0..10 {
            a.append(payload(i)).await.unwrap();
        }
        a.close();
        drop(r);
        // As a power loss before the zeros were cut off would leave the segment.
        let (id, len) = list_segments(dir.path()).unwrap()[0];
        let file = OpenOptions::new()
            .write(true)
            .open(segment_path(dir.path(), id))
            .unwrap();
        file.set_len(len + ZERO_AHEAD).unwrap();
        let (a, mut r, m) = open_at(opts(dir.path()));
        assert_eq!(a.stats().pending_records.load(Ordering::Relaxed), 10);
        let (got, _) = drain(&mut r).await;
        assert_eq!(got, (0..10).map(payload).collect::<Vec<_>>());
        assert_eq!(m.spool_corrupt_records.get(), 0);
        assert_eq!(m.spool_corrupt_bytes.get(), 0);
        a.close();
    }

    #[tokio::test]
    async fn segments_rotate_and_are_removed_once_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts(dir.path());
        o.segment_bytes = 600;
        let (a, mut r, _m) = open_at(o);
        for i in 0..50 {
            a.append(payload(i)).await.unwrap();
        }
        assert!(list_segments(dir.path()).unwrap().len() > 5);
        let (got, end) = drain(&mut r).await;
        assert_eq!(got.len(), 50);
        r.ack(end.unwrap(), 50).unwrap();
        assert_eq!(list_segments(dir.path()).unwrap().len(), 1);
        a.close();
    }

    #[tokio::test]
    async fn the_size_cap_refuses_appends_until_the_writer_catches_up() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts(dir.path());
        o.max_bytes = 1000;
        o.segment_bytes = 400;
        let (a, mut r, _m) = open_at(o);
        let mut accepted = 0;
        let mut refusal = None;
        for i in 0..100 {
            match a.append(payload(i)).await {
                Ok(()) => accepted += 1,
                Err(e) => {
                    refusal = Some(e);
                    break;
                }
            }
        }
        assert_eq!(refusal, Some(AppendError::Full));
        assert!(accepted > 5, "{accepted}");
        let (got, end) = drain(&mut r).await;
        assert_eq!(got.len(), accepted);
        r.ack(end.unwrap(), accepted as u64).unwrap();
        a.append(payload(999)).await.unwrap();
        a.close();
    }

    #[tokio::test]
    async fn a_torn_tail_and_flipped_bytes_lose_only_the_damaged_records() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts(dir.path());
        o.segment_bytes = 1500;
        let (a, r, _m) = open_at(o.clone());
        for i in 0..60 {
            a.append(payload(i)).await.unwrap();
        }
        a.close();
        drop(r);
        let segs = list_segments(dir.path()).unwrap();
        assert!(segs.len() >= 3);
        // First segment: flip one byte inside its third record's payload.
        let first = segment_path(dir.path(), segs[0].0);
        let mut bytes = std::fs::read(&first).unwrap();
        let frame = RECORD_HEADER_LEN + payload(0).len();
        let third = SEGMENT_HEADER_LEN as usize + 2 * frame + RECORD_HEADER_LEN + 3;
        bytes[third] ^= 0xff;
        std::fs::write(&first, &bytes).unwrap();
        // Second segment: cut in the middle of its last record, as a power loss would.
        let second = segment_path(dir.path(), segs[1].0);
        let len = std::fs::metadata(&second).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&second)
            .unwrap()
            .set_len(len - 7)
            .unwrap();
        let per_segment = (bytes.len() - SEGMENT_HEADER_LEN as usize) / frame;

        let (a, mut r, m) = open_at(o);
        let (got, _) = drain(&mut r).await;
        assert_eq!(got.len(), 60 - 2);
        assert!(!got.contains(&payload(2)));
        assert!(!got.contains(&payload((2 * per_segment - 1) as u32)));
        assert_eq!(got.last(), Some(&payload(59)), "what follows is delivered");
        assert_eq!(m.spool_corrupt_records.get(), 2);
        assert!(m.spool_corrupt_bytes.get() > 0);
        a.close();
    }

    #[tokio::test]
    async fn a_segment_with_an_unknown_header_is_set_aside_not_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let (a, r, _m) = open_at(opts(dir.path()));
        a.append(payload(1)).await.unwrap();
        a.close();
        drop(r);
        let (id, _) = list_segments(dir.path()).unwrap()[0];
        let path = segment_path(dir.path(), id);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[8] = 99; // a payload format from the future
        std::fs::write(&path, bytes).unwrap();
        let (a, mut r, m) = open_at(opts(dir.path()));
        let (got, _) = drain(&mut r).await;
        assert!(got.is_empty());
        assert!(dir
            .path()
            .join("unreadable")
            .join(format!("segment-{id:020}.log"))
            .exists());
        assert_eq!(m.spool_corrupt_records.get(), 1);
        a.close();
    }

    #[tokio::test]
    async fn concurrent_appends_share_fsyncs() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts(dir.path());
        o.group_commit_wait = Duration::from_millis(2);
        let (a, mut r, m) = open_at(o);
        let a = Arc::new(a);
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let a = a.clone();
                tokio::spawn(async move { a.append(payload(i)).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let (got, _) = drain(&mut r).await;
        assert_eq!(got.len(), 200);
        assert!(
            m.spool_fsyncs.get() < 200,
            "{} fsyncs for 200 appends",
            m.spool_fsyncs.get()
        );
        a.close();
    }

    /// A current-thread runtime like an actix worker's event loop.
    fn event_loop() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn a_workers_relay_takes_one_wakeup_per_commit_for_all_its_requests() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts(dir.path());
        o.group_commit_wait = Duration::from_millis(5);
        let (a, mut r, m) = open_at(o);
        let a = Arc::new(a);
        let local = tokio::task::LocalSet::new();
        event_loop().block_on(local.run_until(async {
            let relay = a.relay();
            let tasks: Vec<_> = (0..100)
                .map(|i| {
                    let a = a.clone();
                    tokio::task::spawn_local(
                        async move { a.append_via(payload(i), Some(relay)).await },
                    )
                })
                .collect();
            for t in tasks {
                t.await.unwrap().unwrap();
            }
        }));
        let (fsyncs, wakeups) = (m.spool_fsyncs.get(), m.spool_answer_wakeups.get());
        assert!(fsyncs < 100, "{fsyncs} fsyncs for 100 appends");
        assert_eq!(wakeups, fsyncs, "one message to the relay per commit");
        // Without a relay every request is woken on its own.
        event_loop().block_on(async {
            for i in 100..110 {
                a.append(payload(i)).await.unwrap();
            }
        });
        assert_eq!(m.spool_answer_wakeups.get(), wakeups + 10);
        let (got, _) = event_loop().block_on(drain(&mut r));
        assert_eq!(got.len(), 110);
        a.close();
    }

    #[test]
    fn answers_for_a_relay_whose_event_loop_stopped_are_sent_directly() {
        let dir = tempfile::tempdir().unwrap();
        let (a, _r, _m) = open_at(opts(dir.path()));
        let local = tokio::task::LocalSet::new();
        let relay = event_loop().block_on(local.run_until(async { a.relay() }));
        // The relay task goes with its event loop.
        drop(local);
        let answer = event_loop().block_on(a.append_via(payload(1), Some(relay)));
        assert_eq!(answer, Ok(()));
        a.close();
    }

    #[tokio::test]
    async fn an_append_arriving_within_the_wait_shares_the_fsync_of_the_one_before() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts(dir.path());
        // Long enough that the second append always arrives inside the window on a slow machine.
        o.group_commit_wait = Duration::from_millis(500);
        let (a, mut r, m) = open_at(o);
        let a = Arc::new(a);
        let first = tokio::spawn({
            let a = a.clone();
            async move { a.append(payload(0)).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        a.append(payload(1)).await.unwrap();
        first.await.unwrap().unwrap();
        assert_eq!(
            m.spool_fsyncs.get(),
            1,
            "two appends 50 ms apart, one fsync"
        );
        assert_eq!(drain(&mut r).await.0, vec![payload(0), payload(1)]);
        a.close();
    }

    #[tokio::test]
    async fn every_commit_is_timed_for_the_metrics() {
        let dir = tempfile::tempdir().unwrap();
        let (m, registry) = Metrics::standalone();
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        let (a, _r) = open(opts(dir.path()), m.clone(), clock).unwrap();
        a.append(payload(1)).await.unwrap();
        a.append(payload(2)).await.unwrap();
        assert_eq!(m.spool_fsyncs.get(), 2);
        let text = crate::metrics::render(&registry);
        assert!(
            text.contains("footfall_spool_commit_seconds_count 2"),
            "{text}"
        );
        a.close();
    }

    #[tokio::test]
    async fn closing_answers_every_request_and_tells_the_reader() {
        let dir = tempfile::tempdir().unwrap();
        let (a, mut r, _m) = open_at(opts(dir.path()));
        a.append(payload(1)).await.unwrap();
        a.close();
        assert!(matches!(r.next(None).await.unwrap(), Next::Record(_)));
        assert!(matches!(r.next(None).await.unwrap(), Next::Closed));
        assert_eq!(a.append(payload(2)).await, Err(AppendError::Closed));
    }
}
