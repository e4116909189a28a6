//! The daemon-wide shutdown signal: one sender, any number of watchers.

use std::time::Duration;

use tokio::sync::watch;

/// Fires once; every clone sees it.
#[derive(Debug, Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

/// Fires the signal; dropping it fires it too, so no task outlives the
/// daemon's main function.
#[derive(Debug)]
pub struct ShutdownTrigger {
    tx: watch::Sender<bool>,
}

pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger { tx }, Shutdown { rx })
}

impl ShutdownTrigger {
    pub fn fire(&self) {
        let _ = self.tx.send(true);
    }
}

impl Drop for ShutdownTrigger {
    fn drop(&mut self) {
        self.fire();
    }
}

impl Shutdown {
    /// Resolves once shutdown has begun.
    pub async fn wait(&self) {
        let mut rx = self.rx.clone();
        // An error means the trigger is gone, which is shutdown too.
        let _ = rx.wait_for(|stopping| *stopping).await;
    }

    pub fn is_fired(&self) -> bool {
        *self.rx.borrow()
    }

    /// Sleeps for `d`; returns true if shutdown began meanwhile.
    pub async fn sleep_or_stop(&self, d: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(d) => self.is_fired(),
            () = self.wait() => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dropping_the_trigger_fires() {
        let (trigger, shutdown) = channel();
        assert!(!shutdown.is_fired());
        drop(trigger);
        shutdown.wait().await;
        assert!(shutdown.sleep_or_stop(Duration::from_secs(60)).await);
    }
}
