//! Polling until something holds, for the end-to-end tests.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

/// Poll `check` every 150 ms until it returns `true`; an error after `timeout` names `what`.
/// An error from `check` ends the wait at once.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await? {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}
