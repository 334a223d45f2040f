//! What the fault tests (`fault_*.rs`) share: the real binary as a child process (killed,
//! restarted on its port, its memory read), a TCP proxy that cuts a database off, a client
//! that reconnects like the stock provider (and can read slowly, or not at all), a reader of
//! what the store holds, and the figures the tests print.

pub mod figures;
pub mod process;
pub mod proxy;
pub mod replica;
pub mod stored;
pub mod throttle;

/// Held by the tests that load the machine (thousands of clients, firehoses, 20 MB pastes):
/// one at a time, so that none starves another into failing for want of CPU, and the figures
/// they print measure the server rather than each other.
pub async fn one_heavy_test_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    HEAVY.lock().await
}
