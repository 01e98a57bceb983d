//! `--record DIR` / `[inspect] record`: a JSON Lines recording of each tunnel (or
//! each whose path or route contains `record_match`), written as it happens by a
//! thread of its own, so disk writes never hold up relaying.
//!
//! Tunnels to record capture every message from their start. A few times a second
//! the writer appends the messages each has finished since it last looked (frame
//! lines, as `GET /api/tunnels/{id}/recording` has them); messages that capture
//! evicted before the writer took them are counted in a `gap` line. When the tunnel
//! has ended, the rest and an `end` line follow and the file is closed. A file that
//! reaches `record_file_bytes` continues in a new part (which starts with the
//! tunnel's `start` and `handshake` lines again); once the directory holds more than
//! `record_total_bytes` of recordings, the oldest finished files are deleted.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::tunnel::TunnelShared;
use crate::inspect::recording::{self, Line};
use crate::inspect::redact::Redact;
use crate::sync::lock;

/// How often the writer looks for new messages.
const ROUND: Duration = Duration::from_millis(200);

/// What the recorder is configured with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub dir: PathBuf,
    pub matching: Option<String>,
    pub file_bytes: u64,
    pub total_bytes: u64,
    pub redact: Redact,
}

impl Settings {
    /// Whether a tunnel with this path and route is recorded.
    pub fn wants(&self, path: &str, route: &str) -> bool {
        self.matching
            .as_deref()
            .is_none_or(|m| path.contains(m) || route.contains(m))
    }
}

/// The tunnels handed to the writer, and its stop flag.
#[derive(Default)]
pub struct Inbox {
    new: Mutex<Vec<Arc<TunnelShared>>>,
    stop: AtomicBool,
}

impl Inbox {
    /// Records `tunnel` from now on.
    pub fn add(&self, tunnel: Arc<TunnelShared>) {
        lock(&self.new).push(tunnel);
    }
}

/// The running writer.
pub struct Recorder {
    pub inbox: Arc<Inbox>,
    pub settings: Settings,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Recorder {
    /// Creates the directory and starts the writer.
    pub fn start(settings: Settings) -> std::io::Result<Recorder> {
        std::fs::create_dir_all(&settings.dir)?;
        let inbox = Arc::new(Inbox::default());
        let thread = std::thread::Builder::new().name("recorder".into()).spawn({
            let (inbox, settings) = (inbox.clone(), settings.clone());
            move || Writer::new(settings).run(&inbox)
        })?;
        Ok(Recorder {
            inbox,
            settings,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Writes what is left and stops (after the tunnels have ended).
    pub fn stop(&self) {
        self.inbox.stop.store(true, Ordering::Relaxed);
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
    }
}

/// One tunnel being written.
struct Open {
    tunnel: Arc<TunnelShared>,
    file: Option<File>,
    path: PathBuf,
    /// The file of the current part.
    current: PathBuf,
    part: u32,
    written: u64,
    /// Bytes of the current part's head (start and handshake lines).
    head_bytes: u64,
    /// The next message number wanted per direction.
    next: [u64; 2],
}

struct Writer {
    settings: Settings,
    open: Vec<Open>,
    /// Files written, oldest first, and their sizes (for the total bound).
    order: VecDeque<PathBuf>,
    sizes: HashMap<PathBuf, u64>,
    total: u64,
}

impl Writer {
    fn new(settings: Settings) -> Writer {
        Writer {
            settings,
            open: Vec::new(),
            order: VecDeque::new(),
            sizes: HashMap::new(),
            total: 0,
        }
    }

    fn run(mut self, inbox: &Inbox) {
        loop {
            let stopping = inbox.stop.load(Ordering::Relaxed);
            let new = std::mem::take(&mut *lock(&inbox.new));
            for tunnel in new {
                self.begin(tunnel);
            }
            self.round();
            if stopping {
                for o in &mut self.open {
                    o.file = None;
                }
                return;
            }
            std::thread::sleep(ROUND);
        }
    }

    fn begin(&mut self, tunnel: Arc<TunnelShared>) {
        let stamp = chrono::DateTime::<chrono::Utc>::from(tunnel.opened).format("%Y%m%dT%H%M%S");
        let path = self
            .settings
            .dir
            .join(format!("{stamp}-tunnel-{}.jsonl", tunnel.id));
        let mut o = Open {
            tunnel,
            file: None,
            current: path.clone(),
            path,
            part: 1,
            written: 0,
            head_bytes: 0,
            next: [0, 0],
        };
        self.open_part(&mut o);
        self.open.push(o);
    }

    /// Opens the file of `o`'s current part and writes the tunnel's head lines.
    fn open_part(&mut self, o: &mut Open) {
        let path = if o.part == 1 {
            o.path.clone()
        } else {
            o.path.with_extension(format!("{}.jsonl", o.part))
        };
        match File::options().append(true).create(true).open(&path) {
            Ok(f) => {
                o.file = Some(f);
                o.written = 0;
                o.head_bytes = 0;
                o.current = path.clone();
                self.order.push_back(path.clone());
                self.sizes.insert(path, 0);
                let head = recording::head(&o.tunnel.info(), &self.settings.redact);
                self.write(o, &head);
                o.head_bytes = o.written;
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), "cannot write the recording: {e}");
                o.file = None;
            }
        }
    }

    /// Appends what each tunnel finished since the last round; closes the files of
    /// tunnels that have ended.
    fn round(&mut self) {
        let mut open = std::mem::take(&mut self.open);
        for o in &mut open {
            let ended = o.tunnel.ended();
            let (messages, gaps, after) = o.tunnel.messages_since(o.next);
            let mut lines = Vec::new();
            for (i, missed) in gaps.into_iter().enumerate() {
                if missed > 0 {
                    lines.push(Line::Gap {
                        dir: if i == 0 { "c2b" } else { "b2c" }.into(),
                        missed,
                    });
                }
            }
            o.next = after;
            lines.extend(recording::frames(&messages));
            if let Some(e) = &ended {
                lines.push(Line::End {
                    side: e.side.to_string(),
                    code: e.code,
                    reason: e.reason.clone(),
                });
            }
            self.write(o, &lines);
            if ended.is_some() {
                o.file = None;
            }
        }
        open.retain(|o| o.file.is_some());
        self.open = open;
        self.trim();
    }

    fn write(&mut self, o: &mut Open, lines: &[Line]) {
        for line in lines {
            // A part full of frames continues in the next (its head does not count,
            // so a large head never makes a file per line).
            let body = o.written.saturating_sub(o.head_bytes);
            if o.head_bytes > 0
                && body > 0
                && o.written >= self.settings.file_bytes
                && !matches!(line, Line::End { .. })
            {
                o.part += 1;
                self.open_part(o);
            }
            let Some(f) = o.file.as_mut() else {
                return;
            };
            let text = recording::to_line(line);
            if let Err(e) = f.write_all(text.as_bytes()) {
                tracing::warn!(path = %o.path.display(), "cannot write the recording: {e}");
                o.file = None;
                return;
            }
            let n = text.len() as u64;
            o.written += n;
            self.total += n;
            if let Some(size) = self.sizes.get_mut(&o.current) {
                *size += n;
            }
        }
    }

    /// Deletes the oldest files while the recordings exceed their total bound (the
    /// files still being written stay).
    fn trim(&mut self) {
        let mut i = 0;
        while self.total > self.settings.total_bytes && i < self.order.len() {
            // A file still being written stays; older finished ones go first.
            if self.open.iter().any(|o| o.current == self.order[i]) {
                i += 1;
                continue;
            }
            let Some(path) = self.order.remove(i) else {
                return;
            };
            let size = self.sizes.remove(&path).unwrap_or(0);
            self.total = self.total.saturating_sub(size);
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), "cannot delete an old recording: {e}");
            }
        }
    }
}
