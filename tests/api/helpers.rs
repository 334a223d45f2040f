//! The test harness: a real server on an ephemeral port with its own fresh database, and
//! real clients: reqwest for REST, yrs documents over tokio-tungstenite for WebSockets.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use sqlx::Connection;
use tandem::auth::{Claims, Docs, Scope, Verifier};
use tandem::config::Config;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use yrs::block::ClientID;
use yrs::encoding::read::Cursor;
use yrs::sync::protocol::MessageReader;
use yrs::sync::{Awareness, Message, SyncMessage};
use yrs::updates::decoder::{Decode, DecoderV1};
use yrs::updates::encoder::Encode;
use yrs::{Doc, GetString, ReadTxn, Text, Transact, Update};

/// How long a test waits for something that should happen at once.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Writes a line the test harness does not capture: skips must be seen.
pub fn shout(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// When set (CI does), a test that would be skipped for lack of Postgres or Node fails.
pub fn require_all() -> bool {
    std::env::var("TANDEM_TEST_REQUIRE_ALL").is_ok_and(|v| v == "1")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// Postgres when `TEST_POSTGRES_URL` is set; otherwise a loud skip (or a failure in CI).
    pub fn postgres_or_skip(test: &str) -> Option<Self> {
        if std::env::var("TEST_POSTGRES_URL").is_ok() {
            return Some(Self::Postgres);
        }
        if require_all() {
            panic!("{test}: TEST_POSTGRES_URL is not set and TANDEM_TEST_REQUIRE_ALL=1");
        }
        shout(&format!(
            "SKIPPED: {test} (set TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres to run it)"
        ));
        None
    }
}

/// Runs each named `async fn name(backend: Backend)` on SQLite, and on Postgres when
/// `TEST_POSTGRES_URL` is set, as the tests `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::helpers::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let test = concat!(module_path!(), "::postgres");
                if let Some(backend) = $crate::helpers::Backend::postgres_or_skip(test) {
                    super::$name(backend).await
                }
            }
        }
    )*};
}

/// A fresh database of its own for one test; removed when dropped.
pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    /// The SQLite file's folder, or the Postgres database's name.
    _dir: Option<tempfile::TempDir>,
    pg_name: Option<String>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("tandem.db").display());
                Self { backend, url, _dir: Some(dir), pg_name: None }
            }
            Backend::Postgres => {
                let admin = std::env::var("TEST_POSTGRES_URL").expect("TEST_POSTGRES_URL");
                let name = format!("tandem_test_{}", uuid::Uuid::new_v4().simple());
                let mut conn =
                    sqlx::PgConnection::connect(&admin).await.expect("connect to TEST_POSTGRES_URL");
                sqlx::query(&format!("create database {name}"))
                    .execute(&mut conn)
                    .await
                    .expect("create database");
                let url = with_database(&admin, &name);
                Self { backend, url, _dir: None, pg_name: Some(name) }
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else {
            return;
        };
        let Ok(admin) = std::env::var("TEST_POSTGRES_URL") else {
            return;
        };
        // Drop runs inside the test's runtime; a thread of its own may block.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&admin).await.ok()?;
                sqlx::query(&format!("drop database if exists {name} with (force)"))
                    .execute(&mut conn)
                    .await
                    .ok()
            })
        })
        .join();
    }
}

impl TestDb {
    /// Runs SQL on this database over a connection of its own (fault injection: triggers
    /// that make statements fail, locks, refusals).
    pub async fn execute(&self, sql: &str) {
        match self.backend {
            Backend::Sqlite => {
                let mut conn =
                    sqlx::SqliteConnection::connect(&self.url).await.expect("open the SQLite file");
                sqlx::raw_sql(sql).execute(&mut conn).await.expect("run SQL");
            }
            Backend::Postgres => {
                let mut conn = sqlx::PgConnection::connect(&self.url).await.expect("connect");
                sqlx::raw_sql(sql).execute(&mut conn).await.expect("run SQL");
            }
        }
    }

    /// Makes every statement of `kind` (`insert`, `delete`) on `table` fail, as a database
    /// that refuses writes would.
    pub async fn refuse(&self, kind: &str, table: &str) {
        let name = format!("refuse_{kind}_{table}");
        let sql = match self.backend {
            Backend::Sqlite => format!(
                "create trigger {name} before {kind} on {table} begin select raise(abort, 'refused by the test'); end;"
            ),
            Backend::Postgres => format!(
                "create or replace function {name}() returns trigger language plpgsql as \
                 $$ begin raise exception 'refused by the test'; end $$; \
                 create trigger {name} before {kind} on {table} for each row execute function {name}();"
            ),
        };
        self.execute(&sql).await;
    }

    /// Lets `kind` statements on `table` through again.
    pub async fn allow(&self, kind: &str, table: &str) {
        let name = format!("refuse_{kind}_{table}");
        let sql = match self.backend {
            Backend::Sqlite => format!("drop trigger {name};"),
            Backend::Postgres => format!("drop trigger {name} on {table};"),
        };
        self.execute(&sql).await;
    }

    /// Postgres only: the database refuses new sessions and its open ones are ended.
    pub async fn refuse_sessions(&self, refuse: bool) {
        let name = self.pg_name.as_ref().expect("a Postgres database");
        let admin = std::env::var("TEST_POSTGRES_URL").expect("TEST_POSTGRES_URL");
        let mut conn = sqlx::PgConnection::connect(&admin).await.expect("connect as admin");
        let allow = if refuse { "false" } else { "true" };
        sqlx::query(&format!("alter database {name} with allow_connections {allow}"))
            .execute(&mut conn)
            .await
            .unwrap();
        if refuse {
            let kill =
                format!("select pg_terminate_backend(pid) from pg_stat_activity where datname = '{name}'");
            sqlx::query(&kill).execute(&mut conn).await.unwrap();
        }
    }
}

/// `admin` with its database name replaced by `name`.
fn with_database(admin: &str, name: &str) -> String {
    let (base, query) = admin.split_once('?').map_or((admin, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

/// Settings for tests: the defaults, with timers short enough to observe.
pub fn test_config(db: &TestDb) -> Config {
    let mut config = Config::defaults();
    config.listen = "127.0.0.1:0".parse().expect("address");
    config.database_url = db.url.clone();
    config
}

/// The secret of tests that run with access control.
pub const SECRET: &str = "correct horse battery staple";

/// Settings tweak: access control with [`SECRET`].
pub fn with_auth(config: &mut Config) {
    config.auth.auth_secret = Some(SECRET.into());
}

/// The server, running in this process on an ephemeral port.
pub struct TestApp {
    pub addr: SocketAddr,
    pub db: TestDb,
    pub config: Config,
    pub http: reqwest::Client,
    /// With access control on: a token for every document with scope admin, which the
    /// helpers below send (and [`TestApp::client`] connects with).
    pub admin: Option<String>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, |_| {}).await
    }

    pub async fn spawn_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Self {
        let db = TestDb::new(backend).await;
        let mut config = test_config(&db);
        tweak(&mut config);
        Self::start(db, config).await
    }

    pub async fn start(db: TestDb, config: Config) -> Self {
        init_logging();
        let listener = tokio::net::TcpListener::bind(config.listen).await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let task = tokio::spawn(tandem::server::run(config.clone(), listener, shutdown));
        let admin =
            config.auth.auth_secret.as_ref().map(|secret| sign(secret, Docs::All, Scope::Admin, 3600));
        let app = Self {
            addr,
            db,
            config,
            http: reqwest::Client::new(),
            admin,
            stop: Some(stop),
            task: Some(task),
        };
        app.wait_ready().await;
        app
    }

    async fn wait_ready(&self) {
        if self.config.tls_cert.is_some() {
            // Plain HTTP gets nowhere; the listener is bound, so connections wait in its queue.
            return;
        }
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Ok(resp) = self.http.get(self.url("/healthz")).send().await
                && resp.status().is_success()
            {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "server did not come up");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Graceful shutdown (as on SIGTERM); returns the database for a restart.
    pub async fn stop(mut self) -> (TestDb, Config) {
        let _ = self.stop.take().expect("running").send(());
        let result = tokio::time::timeout(Duration::from_secs(30), self.task.take().expect("running"))
            .await
            .expect("server stopped in time")
            .expect("server task");
        result.expect("server ran cleanly");
        (self.db, self.config)
    }

    /// Stops the server and starts a new one on the same database (a new port).
    pub async fn restart(self) -> Self {
        let (db, mut config) = self.stop().await;
        config.listen = "127.0.0.1:0".parse().expect("address");
        Self::start(db, config).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The socket URL of a document, with the admin token when access control is on.
    pub fn ws_url(&self, id: &str) -> String {
        match &self.admin {
            Some(token) => self.ws_url_with(id, token),
            None => format!("ws://{}/ws/{id}", self.addr),
        }
    }

    pub fn ws_url_with(&self, id: &str, token: &str) -> String {
        format!("ws://{}/ws/{id}?token={token}", self.addr)
    }

    /// A token signed with this server's secret, valid for `ttl_seconds` from now.
    pub fn token(&self, docs: Docs, scope: Scope, ttl_seconds: u64) -> String {
        let secret = self.config.auth.auth_secret.as_ref().expect("access control is on");
        sign(secret, docs, scope, ttl_seconds)
    }

    /// A token for one document.
    pub fn doc_token(&self, id: &str, scope: Scope) -> String {
        self.token(Docs::parse(id).expect("a document id"), scope, 3600)
    }

    /// A request with the admin token, if access control is on.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, self.url(path));
        match &self.admin {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    pub async fn create_doc(&self, title: &str) -> String {
        let resp = self
            .request(reqwest::Method::POST, "/api/docs")
            .json(&serde_json::json!({ "title": title }))
            .send()
            .await
            .expect("create");
        assert_eq!(resp.status(), 201);
        let doc: Value = resp.json().await.expect("json");
        doc["id"].as_str().expect("id").to_owned()
    }

    pub async fn text(&self, id: &str) -> String {
        let resp =
            self.request(reqwest::Method::GET, &format!("/api/docs/{id}/text")).send().await.expect("text");
        assert_eq!(resp.status(), 200, "text of {id}");
        resp.text().await.expect("body")
    }

    pub async fn client(&self, id: &str) -> Client {
        Client::connect(&self.ws_url(id)).await
    }
}

/// Signs a token as an application's backend would.
pub fn sign(secret: &str, docs: Docs, scope: Scope, ttl_seconds: u64) -> String {
    let verifier = Verifier::from_settings(Some(secret), None).expect("secret").expect("keys");
    let claims = Claims::new(docs, scope, Duration::from_secs(ttl_seconds));
    verifier.sign(&claims).expect("sign")
}

/// As [`sign`], for a person with a display name (an hour).
pub fn sign_named(secret: &str, docs: Docs, scope: Scope, name: &str) -> String {
    let verifier = Verifier::from_settings(Some(secret), None).expect("secret").expect("keys");
    let mut claims = Claims::new(docs, scope, Duration::from_secs(3600));
    claims.name = Some(name.to_owned());
    verifier.sign(&claims).expect("sign")
}

fn init_logging() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if let Ok(filter) = std::env::var("TEST_LOG") {
            let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
        }
    });
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What a client has received, besides what it applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    Step1,
    Step2,
    Update,
    Awareness,
    Other(String),
}

/// A Yjs client built on yrs: it runs the y-websocket protocol the way the stock
/// JavaScript provider does (step 1 on connect, answers the server's step 1, applies
/// updates and awareness). It reads only when a test asks it to wait for something.
pub struct Client {
    pub socket: Socket,
    pub awareness: Awareness,
    pub received: Vec<Received>,
    pub closed: Option<Option<CloseFrame>>,
    /// The highest clock of this client's own changes that the server has echoed back.
    pub echoed_clock: u32,
}

impl Client {
    pub async fn connect(url: &str) -> Self {
        Self::connect_with(url, Doc::new()).await
    }

    /// Connects with an existing document (for offline edits made before reconnecting).
    pub async fn connect_with(url: &str, doc: Doc) -> Self {
        let (socket, _) = tokio_tungstenite::connect_async(url).await.expect("websocket connect");
        Self::from_socket(socket, doc).await
    }

    /// A client over a socket already upgraded: it sends its step 1, as the stock one does.
    pub async fn from_socket(socket: Socket, doc: Doc) -> Self {
        let mut client = Self {
            socket,
            awareness: Awareness::new(doc),
            received: Vec::new(),
            closed: None,
            echoed_clock: 0,
        };
        let sv = client.doc().transact().state_vector();
        client.send_message(Message::Sync(SyncMessage::SyncStep1(sv))).await;
        client
    }

    pub fn doc(&self) -> &Doc {
        self.awareness.doc()
    }

    pub fn client_id(&self) -> ClientID {
        self.doc().client_id()
    }

    /// Takes the document away (the socket is dropped without a close frame).
    pub fn into_doc(self) -> Doc {
        let Self { awareness, .. } = self;
        // A fresh handle on the same document store.
        awareness.doc().clone()
    }

    pub fn text(&self) -> String {
        let text = self.doc().get_or_insert_text("content");
        text.get_string(&self.doc().transact())
    }

    /// Edits locally without telling the server; returns the update.
    pub fn edit_offline(&self, index: u32, chunk: &str) -> Vec<u8> {
        let text = self.doc().get_or_insert_text("content");
        let before = self.doc().transact().state_vector();
        text.insert(&mut self.doc().transact_mut(), index, chunk);
        self.doc().transact().encode_state_as_update_v1(&before)
    }

    /// Edits and sends the update, as a provider does on each local change.
    pub async fn insert(&mut self, index: u32, chunk: &str) {
        let update = self.edit_offline(index, chunk);
        self.send_message(Message::Sync(SyncMessage::Update(update))).await;
    }

    /// Waits until the server has applied (and echoed back, maybe merged with others) every
    /// change this client has sent.
    pub async fn settled(&mut self) {
        self.settled_within(PATIENCE).await;
    }

    /// As [`Self::settled`], for a client the server holds back on purpose.
    pub async fn settled_within(&mut self, patience: Duration) {
        let own = self.doc().transact().state_vector().get(&self.client_id());
        self.wait_until_within("every update echoed", patience, |c| c.echoed_clock >= own).await;
    }

    pub async fn append(&mut self, chunk: &str) {
        // Indexes count in the document's offset unit; `len` uses the same one.
        let len = self.doc().get_or_insert_text("content").len(&self.doc().transact());
        self.insert(len, chunk).await;
    }

    pub async fn set_awareness(&mut self, state: serde_json::Value) {
        self.awareness.set_local_state(state).expect("awareness state");
        let update = self.awareness.update_with_clients([self.client_id()]).expect("own state");
        self.send_message(Message::Awareness(update)).await;
    }

    pub fn awareness_of(&self, client: ClientID) -> Option<serde_json::Value> {
        self.awareness.state(client)
    }

    pub async fn send_message(&mut self, message: Message) {
        self.send_raw(message.encode_v1()).await;
    }

    pub async fn send_raw(&mut self, bytes: Vec<u8>) {
        self.socket.send(WsMessage::binary(bytes)).await.expect("send");
    }

    /// Reads and handles frames until `done` holds; panics after [`PATIENCE`].
    pub async fn wait_until(&mut self, what: &str, done: impl FnMut(&Client) -> bool) {
        self.wait_until_within(what, PATIENCE, done).await;
    }

    /// As [`Self::wait_until`], with a patience of its own.
    pub async fn wait_until_within(
        &mut self,
        what: &str,
        patience: Duration,
        mut done: impl FnMut(&Client) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + patience;
        while !done(self) {
            let frame = tokio::time::timeout_at(deadline, self.socket.next()).await.unwrap_or_else(|_| {
                let text = self.text();
                let head: String = text.chars().take(120).collect();
                panic!("timed out waiting until {what}; text of {} chars: {head:?}...", text.chars().count())
            });
            match frame {
                Some(Ok(frame)) => self.handle(frame).await,
                Some(Err(err)) => panic!("socket error while waiting until {what}: {err}"),
                None => panic!("socket ended while waiting until {what}"),
            }
        }
    }

    pub async fn wait_for_text(&mut self, expected: &str) {
        self.wait_until(&format!("text is {expected:?}"), |c| c.text() == expected).await;
    }

    /// Waits until the server has answered our step 1 (we hold its state).
    pub async fn synced(&mut self) {
        self.wait_until("synced", |c| c.received.contains(&Received::Step2)).await;
    }

    /// Reads until the server closes the socket; returns the close frame.
    pub async fn wait_closed(&mut self) -> Option<CloseFrame> {
        self.wait_until("the server closes the socket", |c| c.closed.is_some()).await;
        self.closed.clone().flatten()
    }

    async fn handle(&mut self, frame: WsMessage) {
        let bytes = match frame {
            WsMessage::Binary(bytes) => bytes,
            WsMessage::Close(frame) => {
                self.closed = Some(frame);
                return;
            }
            WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_) => return,
            WsMessage::Text(text) => panic!("server sent a text frame: {text}"),
        };
        // One message per frame: the stock client reads only the first.
        let mut decoder = DecoderV1::new(Cursor::new(&bytes));
        let messages: Vec<Message> = MessageReader::new(&mut decoder)
            .collect::<Result<_, _>>()
            .unwrap_or_else(|err| panic!("server sent an undecodable frame: {err}"));
        assert_eq!(messages.len(), 1, "a frame must carry exactly one message: {messages:?}");
        let message = messages.into_iter().next().expect("one message");
        match message {
            Message::Sync(SyncMessage::SyncStep1(sv)) => {
                self.received.push(Received::Step1);
                let update = self.doc().transact().encode_state_as_update_v1(&sv);
                self.send_message(Message::Sync(SyncMessage::SyncStep2(update))).await;
            }
            Message::Sync(SyncMessage::SyncStep2(update)) => {
                self.received.push(Received::Step2);
                self.apply(&update);
            }
            Message::Sync(SyncMessage::Update(update)) => {
                self.received.push(Received::Update);
                self.apply(&update);
            }
            Message::Awareness(update) => {
                self.received.push(Received::Awareness);
                self.awareness.apply_update(update).expect("awareness update applies");
            }
            other => self.received.push(Received::Other(format!("{other:?}"))),
        }
    }

    fn apply(&mut self, update: &[u8]) {
        let update = Update::decode_v1(update).expect("server sent a decodable update");
        // The end of this client's own insertions the update carries (echoes may be merged
        // with other clients' updates, and need not start at clock 0).
        let me = self.client_id();
        let insertions = update.insertions(true);
        let own = insertions.iter().filter(|(client, _)| **client == me);
        let end = own.flat_map(|(_, ranges)| ranges.iter().map(|range| range.end).collect::<Vec<_>>()).max();
        self.echoed_clock = self.echoed_clock.max(end.unwrap_or(0));
        self.doc().transact_mut().apply_update(update).expect("update applies");
    }
}

/// A document with a bystander who has typed "intact", on a server with a config tweak.
pub async fn setup(tweak: impl FnOnce(&mut Config)) -> (TestApp, String, Client) {
    let app = TestApp::spawn_with(Backend::Sqlite, tweak).await;
    let id = app.create_doc("target").await;
    let mut bystander = app.client(&id).await;
    bystander.synced().await;
    bystander.append("intact").await;
    bystander.settled().await;
    (app, id, bystander)
}

/// The bystander can still edit, and the document holds exactly what it should.
pub async fn still_serving(app: &TestApp, id: &str, mut bystander: Client) {
    bystander.append(" and alive").await;
    bystander.settled().await;
    let mut fresh = app.client(id).await;
    fresh.synced().await;
    assert_eq!(fresh.text(), "intact and alive");
    assert_eq!(app.text(id).await, "intact and alive");
}

/// A raw WebSocket to `/ws/{id}`, for feeding garbage.
pub async fn raw_socket(app: &TestApp, id: &str) -> Socket {
    tokio_tungstenite::connect_async(app.ws_url(id)).await.expect("websocket connect").0
}

/// Reads a raw socket until the server closes it; the close frame, if any.
pub async fn read_until_closed<S>(socket: &mut WebSocketStream<S>) -> Option<CloseFrame>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match tokio::time::timeout_at(deadline, socket.next())
            .await
            .expect("server closed the socket in time")
        {
            Some(Ok(WsMessage::Close(frame))) => return frame,
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return None,
        }
    }
}
