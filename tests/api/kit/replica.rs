//! A client that lives through failures the way the stock y-websocket provider does: it
//! keeps its document for its whole life, reconnects with the provider's backoff, and on
//! every connection resyncs by state vector (it sends step 1 and answers the server's
//! step 1 with step 2). Edits made while it is disconnected, or refused by the server, stay
//! in its document and reach the server with the next step 2.
//!
//! It records what a test counts: each session and how it ended, refused upgrades, its own
//! edits, and when each client's edits arrived.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};
use yrs::block::ClientID;
use yrs::encoding::read::Cursor;
use yrs::sync::protocol::MessageReader;
use yrs::sync::{Message, SyncMessage};
use yrs::updates::decoder::{Decode, DecoderV1};
use yrs::updates::encoder::Encode;
use yrs::{Doc, GetString, ReadTxn, StateVector, Text, Transact, Update};

use super::throttle::{Rate, Throttled};

/// The stock provider's backoff: 100 ms doubled per failed attempt, at most 2.5 s; after a
/// connection that opened, 100 ms again.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_millis(2500);

/// A throttled reader's receive buffer: small, so that it falls behind at once rather than
/// after the kernel has buffered megabytes for it.
const SLOW_RECEIVE_BUFFER: u32 = 4096;

type Socket = WebSocketStream<Throttled<TcpStream>>;

/// What the test asks of a replica's task.
enum Command {
    /// Make one edit (sent at once when connected).
    Edit,
    /// Edit on a timer, or stop doing so.
    Typing(Option<Duration>),
    Stop,
}

/// How a replica edits: `chars` characters per edit, at a position of its choosing.
#[derive(Clone, Copy, Debug)]
pub struct Style {
    pub chars: usize,
    /// Insert at the end (an append-only log) rather than anywhere.
    pub at_end: bool,
    /// Keep every update the server broadcasts (an observer of the server's order).
    pub record: bool,
    /// Instead of typing: paste this many bytes into another text, then delete them, by
    /// turns (traffic that does not make the document grow).
    pub churn: Option<usize>,
}

impl Default for Style {
    fn default() -> Self {
        Self { chars: 12, at_end: false, record: false, churn: None }
    }
}

/// What happened to a replica.
#[derive(Debug, Default)]
pub struct Log {
    /// Upgrades that succeeded.
    pub sessions: usize,
    /// Sessions in which the server's step 2 arrived (the replica holds the server's state).
    pub synced: usize,
    pub connected: bool,
    /// Connected, and the current session's step 2 has arrived.
    pub in_sync: bool,
    /// How each session ended: the server's close frame (code, reason), or none (broken).
    pub closes: Vec<Option<(u16, String)>>,
    /// Upgrades refused, by HTTP status.
    pub refused: Vec<u16>,
    /// Connection attempts that failed below HTTP (nothing listening, reset).
    pub unreachable: usize,
    /// Why it stopped reconnecting (a final close code or a 404), if it did.
    pub finished: Option<String>,
    /// Each own edit: the clock it ended at, and when it was made.
    pub edits: Vec<(u32, Instant)>,
    /// Whenever an update from the server took a client's edits further: that client, the
    /// clock reached, and when it arrived. Its own echoes are among them.
    pub arrivals: Vec<(ClientID, u32, Instant)>,
    /// With `Style::record`: the payload of every update broadcast to it, in order (not the
    /// step 2 of each sync).
    pub updates: Vec<Vec<u8>>,
}

impl Log {
    /// Sessions the server closed with `code`.
    pub fn closed_with(&self, code: u16) -> usize {
        self.closes.iter().filter(|c| c.as_ref().is_some_and(|(c, _)| *c == code)).count()
    }

    /// When the server had echoed this replica's own edits up to `clock`, if it did.
    pub fn echoed(&self, me: ClientID, clock: u32) -> Option<Instant> {
        self.arrivals.iter().find(|(client, reached, _)| *client == me && *reached >= clock).map(|a| a.2)
    }
}

/// A reconnecting client of one document.
pub struct Replica {
    doc: Doc,
    log: Arc<Mutex<Log>>,
    commands: mpsc::UnboundedSender<Command>,
    task: tokio::task::JoinHandle<()>,
}

impl Replica {
    /// Connects to `url` (`ws://.../ws/{id}`) with a new document.
    pub fn spawn(url: String) -> Self {
        Self::spawn_with(url, Doc::new(), Style::default())
    }

    /// Connects with an existing document (what a client held before it went away).
    pub fn spawn_with(url: String, doc: Doc, style: Style) -> Self {
        Self::spawn_reading(url, doc, style, None)
    }

    /// Reads its socket no faster than `rate` (none: as fast as it can).
    pub fn spawn_reading(url: String, doc: Doc, style: Style, rate: Option<Rate>) -> Self {
        let log = Arc::new(Mutex::new(Log::default()));
        let (commands, inbox) = mpsc::unbounded_channel();
        let seed = doc.client_id().get() | 1;
        let runner = Runner {
            url,
            doc: doc.clone(),
            log: Arc::clone(&log),
            inbox,
            typing: None,
            style,
            rate,
            rng: seed,
            made: 0,
        };
        let task = tokio::spawn(runner.run());
        Self { doc, log, commands, task }
    }

    pub fn client_id(&self) -> ClientID {
        self.doc.client_id()
    }

    /// Edits every `every` from now on, connected or not.
    pub fn type_every(&self, every: Duration) {
        let _ = self.commands.send(Command::Typing(Some(every)));
    }

    pub fn stop_typing(&self) {
        let _ = self.commands.send(Command::Typing(None));
    }

    /// One edit, made by the replica's task in order with everything else it does.
    pub fn edit(&self) {
        let _ = self.commands.send(Command::Edit);
    }

    /// Its document's text.
    pub fn text(&self) -> String {
        let text = self.doc.get_or_insert_text("content");
        text.get_string(&self.doc.transact())
    }

    pub fn state_vector(&self) -> StateVector {
        self.doc.transact().state_vector()
    }

    /// The clock of its own last edit.
    pub fn own_clock(&self) -> u32 {
        self.state_vector().get(&self.client_id())
    }

    /// Reads its log.
    pub fn log<T>(&self, read: impl FnOnce(&Log) -> T) -> T {
        read(&self.log.lock().unwrap())
    }

    /// Stops it (dropping its socket) and hands back its document.
    pub fn stop(self) -> Doc {
        let _ = self.commands.send(Command::Stop);
        self.task.abort();
        self.doc
    }
}

/// Waits until `done` holds for every replica, polling; panics after `patience` with `what`.
pub async fn wait_all(
    replicas: &[&Replica],
    what: &str,
    patience: Duration,
    done: impl Fn(&Replica) -> bool,
) {
    let deadline = Instant::now() + patience;
    loop {
        let pending = replicas.iter().filter(|r| !done(r)).count();
        if pending == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{pending} of {} replicas: not {what}", replicas.len());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until, in every document, every replica holds every other replica's edits (all of
/// them: each one's own clock) and all hold the same text.
pub async fn wait_converged(replicas: &[(usize, Replica)]) {
    let deadline = Instant::now() + crate::helpers::PATIENCE * 3;
    loop {
        let behind = lagging(replicas);
        if behind == 0 {
            return;
        }
        if Instant::now() >= deadline {
            let stuck: Vec<String> = replicas
                .iter()
                .map(|(_, r)| r.log(|l| format!("{}:{:?}:{:?}", l.sessions, l.finished, l.closes.last())))
                .collect();
            panic!("{behind} replica pairs never converged; sessions/finished/last close: {stuck:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Pairs (a, b) of one document where a lacks some of b's edits, or their texts differ.
fn lagging(replicas: &[(usize, Replica)]) -> usize {
    let mut docs: std::collections::HashMap<usize, Vec<(ClientID, StateVector, String)>> = Default::default();
    for (doc, r) in replicas {
        docs.entry(*doc).or_default().push((r.client_id(), r.state_vector(), r.text()));
    }
    let mut behind = 0;
    for views in docs.values() {
        for (_, sv, text) in views {
            for (other, other_sv, other_text) in views {
                behind += usize::from(sv.get(other) < other_sv.get(other) || text != other_text);
            }
        }
    }
    behind
}

/// The replica's task: its document, its connection, its timer.
struct Runner {
    url: String,
    doc: Doc,
    log: Arc<Mutex<Log>>,
    inbox: mpsc::UnboundedReceiver<Command>,
    typing: Option<tokio::time::Interval>,
    style: Style,
    rate: Option<Rate>,
    /// xorshift state, for edit positions.
    rng: u64,
    /// Edits made so far.
    made: u64,
}

/// Why a wait ended early.
struct Stopped;

/// How a session ended.
enum End {
    Again,
    Final(String),
}

/// A connection attempt that did not open.
enum Failed {
    Refused(u16),
    Unreachable,
}

impl Runner {
    async fn run(mut self) {
        let mut failures = 0u32;
        loop {
            let (url, rate) = (self.url.clone(), self.rate.clone());
            let attempt = Box::pin(async move { connect(&url, rate).await });
            let delay = match self.alongside(attempt).await {
                Err(Stopped) => return,
                Ok(Ok(socket)) => {
                    failures = 0;
                    match self.session(socket).await {
                        Err(Stopped) => return,
                        Ok(End::Again) => FIRST_BACKOFF,
                        Ok(End::Final(why)) => return self.finish(why),
                    }
                }
                Ok(Err(Failed::Refused(404))) => return self.finish("404".into()),
                Ok(Err(failed)) => {
                    match failed {
                        Failed::Refused(status) => self.log.lock().unwrap().refused.push(status),
                        Failed::Unreachable => self.log.lock().unwrap().unreachable += 1,
                    }
                    failures += 1;
                    FIRST_BACKOFF.saturating_mul(1 << failures.min(5)).min(MAX_BACKOFF)
                }
            };
            // A little jitter, as timers of many browsers would have.
            let jitter = delay.mul_f64((self.random() % 100) as f64 / 1000.0);
            if self.alongside(Box::pin(tokio::time::sleep(delay + jitter))).await.is_err() {
                return;
            }
        }
    }

    fn finish(&mut self, why: String) {
        let mut log = self.log.lock().unwrap();
        if why == "404" {
            log.refused.push(404);
        }
        log.finished = Some(why);
    }

    /// Waits for `work` while serving commands and the typing timer (edits stay local).
    async fn alongside<F: std::future::Future + Unpin>(&mut self, mut work: F) -> Result<F::Output, Stopped> {
        loop {
            tokio::select! {
                out = &mut work => return Ok(out),
                command = self.inbox.recv() => {
                    if self.command(command).is_some() {
                        self.edit();
                    }
                }
                _ = tick(&mut self.typing) => { self.edit(); }
            }
            if self.typing.is_none() && self.inbox.is_closed() {
                return Err(Stopped);
            }
        }
    }

    /// Takes a command; `Some(())` when it asks for an edit.
    fn command(&mut self, command: Option<Command>) -> Option<()> {
        match command {
            Some(Command::Edit) => Some(()),
            Some(Command::Typing(every)) => {
                self.typing = every.map(|every| {
                    let mut timer = tokio::time::interval(every);
                    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    timer
                });
                None
            }
            Some(Command::Stop) | None => {
                self.typing = None;
                self.inbox.close();
                None
            }
        }
    }

    /// One connection, from the upgrade until it ends.
    async fn session(&mut self, mut socket: Socket) -> Result<End, Stopped> {
        {
            let mut log = self.log.lock().unwrap();
            log.sessions += 1;
            log.connected = true;
        }
        let sv = self.doc.transact().state_vector();
        let opened = send(&mut socket, Message::Sync(SyncMessage::SyncStep1(sv))).await;
        let end = if opened { self.pump(&mut socket).await } else { Ok(None) };
        {
            let mut log = self.log.lock().unwrap();
            log.connected = false;
            log.in_sync = false;
        }
        let close = end?;
        let code = close.as_ref().map(|(code, _)| *code);
        self.log.lock().unwrap().closes.push(close);
        // 4400-4499 are final, as the stock client treats them.
        Ok(match code {
            Some(code @ 4400..=4499) => End::Final(code.to_string()),
            _ => End::Again,
        })
    }

    /// Moves messages until the socket ends; the server's close frame, if it sent one.
    async fn pump(&mut self, socket: &mut Socket) -> Result<Option<(u16, String)>, Stopped> {
        let mut close = None;
        loop {
            tokio::select! {
                frame = socket.next() => match frame {
                    Some(Ok(WsMessage::Close(frame))) => {
                        close = frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                    }
                    Some(Ok(WsMessage::Binary(bytes))) => {
                        if !self.receive(socket, &bytes).await {
                            return Ok(close);
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return Ok(close),
                },
                command = self.inbox.recv() => {
                    if self.command(command).is_some() && !self.edit_and_send(socket).await {
                        return Ok(close);
                    }
                    if self.inbox.is_closed() {
                        return Err(Stopped);
                    }
                }
                _ = tick(&mut self.typing) => {
                    if !self.edit_and_send(socket).await {
                        return Ok(close);
                    }
                }
            }
        }
    }

    /// Handles one frame from the server; false when the socket broke answering it.
    async fn receive(&mut self, socket: &mut Socket, bytes: &[u8]) -> bool {
        let mut decoder = DecoderV1::new(Cursor::new(bytes));
        let messages: Vec<Message> = MessageReader::new(&mut decoder)
            .collect::<Result<_, _>>()
            .expect("the server sent a decodable frame");
        for message in messages {
            match message {
                Message::Sync(SyncMessage::SyncStep1(sv)) => {
                    let update = self.doc.transact().encode_state_as_update_v1(&sv);
                    if !send(socket, Message::Sync(SyncMessage::SyncStep2(update))).await {
                        return false;
                    }
                }
                Message::Sync(SyncMessage::SyncStep2(update)) => {
                    self.apply(&update);
                    let mut log = self.log.lock().unwrap();
                    log.synced += 1;
                    log.in_sync = true;
                }
                Message::Sync(SyncMessage::Update(update)) => {
                    self.apply(&update);
                    if self.style.record {
                        self.log.lock().unwrap().updates.push(update);
                    }
                }
                _ => {}
            }
        }
        true
    }

    /// Applies an update from the server and notes whose edits it took further.
    fn apply(&mut self, bytes: &[u8]) {
        let update = Update::decode_v1(bytes).expect("the server sent a decodable update");
        let now = Instant::now();
        let reached: Vec<(ClientID, u32)> = update
            .insertions(true)
            .iter()
            .filter_map(|(client, ranges)| ranges.iter().map(|r| r.end).max().map(|end| (*client, end)))
            .collect();
        self.doc.transact_mut().apply_update(update).expect("the server's update applies");
        let mut log = self.log.lock().unwrap();
        for (client, end) in reached {
            let further = log.arrivals.iter().rev().find(|a| a.0 == client).is_none_or(|a| a.1 < end);
            if further {
                log.arrivals.push((client, end, now));
            }
        }
    }

    /// Edits and sends the update; false when the socket broke.
    async fn edit_and_send(&mut self, socket: &mut Socket) -> bool {
        let update = self.edit();
        send(socket, Message::Sync(SyncMessage::Update(update))).await
    }

    /// Edits the document locally; the update it made.
    fn edit(&mut self) -> Vec<u8> {
        self.made += 1;
        if let Some(bytes) = self.style.churn {
            return self.churn(bytes);
        }
        let mut chunk = format!("<{:x}.{}>", self.doc.client_id().get() % 0xffff, self.made);
        while chunk.len() < self.style.chars {
            chunk.push('.');
        }
        let text = self.doc.get_or_insert_text("content");
        let before = self.doc.transact().state_vector();
        let len = text.len(&self.doc.transact());
        let at = if self.style.at_end { len } else { (self.random() % (u64::from(len) + 1)) as u32 };
        text.insert(&mut self.doc.transact_mut(), at, &chunk);
        let update = self.doc.transact().encode_state_as_update_v1(&before);
        let clock = self.doc.transact().state_vector().get(&self.doc.client_id());
        self.log.lock().unwrap().edits.push((clock, Instant::now()));
        update
    }

    /// Pastes `bytes` into the text `scratch`, or deletes what the last paste put there.
    fn churn(&mut self, bytes: usize) -> Vec<u8> {
        let scratch = self.doc.get_or_insert_text("scratch");
        let before = self.doc.transact().state_vector();
        let len = scratch.len(&self.doc.transact());
        if len == 0 {
            scratch.insert(&mut self.doc.transact_mut(), 0, &"x".repeat(bytes));
        } else {
            scratch.remove_range(&mut self.doc.transact_mut(), 0, len);
        }
        self.doc.transact().encode_state_as_update_v1(&before)
    }

    fn random(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }
}

/// The typing timer's next tick; never, when not typing.
async fn tick(typing: &mut Option<tokio::time::Interval>) {
    match typing {
        Some(timer) => {
            timer.tick().await;
        }
        None => std::future::pending().await,
    }
}

async fn send(socket: &mut Socket, message: Message) -> bool {
    socket.send(WsMessage::binary(message.encode_v1())).await.is_ok()
}

/// Small read buffers: thousands of replicas share the test's memory.
fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .max_message_size(Some(256 << 20))
        .max_frame_size(Some(256 << 20))
}

/// Opens `ws://127.0.0.1:PORT/...` (loopback only: the tests never leave the machine).
async fn connect(url: &str, rate: Option<Rate>) -> Result<Socket, Failed> {
    let addr = url
        .strip_prefix("ws://")
        .and_then(|rest| rest.split('/').next())
        .and_then(|host| host.parse::<std::net::SocketAddr>().ok())
        .expect("a ws://127.0.0.1:PORT/... url");
    let socket = TcpSocket::new_v4().map_err(|_| Failed::Unreachable)?;
    if rate.is_some() {
        socket.set_recv_buffer_size(SLOW_RECEIVE_BUFFER).map_err(|_| Failed::Unreachable)?;
    }
    let stream = socket.connect(addr).await.map_err(|_| Failed::Unreachable)?;
    let _ = stream.set_nodelay(true);
    match tokio_tungstenite::client_async_with_config(url, Throttled::new(stream, rate), Some(config())).await
    {
        Ok((mut socket, _)) => {
            socket.get_mut().engage();
            Ok(socket)
        }
        Err(tungstenite::Error::Http(response)) => Err(Failed::Refused(response.status().as_u16())),
        Err(_) => Err(Failed::Unreachable),
    }
}
