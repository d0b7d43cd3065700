//! Graceful shutdown of `pbxlink run`: one trigger, and a handle each long-running task
//! holds. A task watches the handle to stop taking new work and keeps it (a clone) until its
//! work in flight is done; the trigger waits, up to a grace period, for every handle to go.

use std::time::Duration;

use tokio::sync::{mpsc, watch};

/// A task's view of the shutdown. Clones count as "still busy" until dropped.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    /// `None`: a shutdown that never comes (tests, one-shot commands).
    stop: Option<watch::Receiver<bool>>,
    _busy: Option<mpsc::Sender<()>>,
}

impl Shutdown {
    /// A handle whose shutdown never comes.
    pub fn never() -> Self {
        Self::default()
    }

    /// Whether the shutdown has begun.
    pub fn is_requested(&self) -> bool {
        self.stop.as_ref().is_some_and(|s| *s.borrow())
    }

    /// Resolves once the shutdown has begun (never, for [`Shutdown::never`]).
    pub async fn requested(&self) {
        match &self.stop {
            Some(stop) => {
                let mut stop = stop.clone();
                // An error means the trigger is gone, which only happens at the very end.
                let _ = stop.wait_for(|s| *s).await;
            }
            None => std::future::pending().await,
        }
    }
}

/// Starts the shutdown and waits for the tasks.
#[derive(Debug)]
pub struct Trigger {
    stop: watch::Sender<bool>,
    busy: mpsc::Receiver<()>,
}

impl Trigger {
    /// A trigger and the first handle (clone it for every task).
    pub fn new() -> (Trigger, Shutdown) {
        let (stop, stop_rx) = watch::channel(false);
        let (busy_tx, busy) = mpsc::channel(1);
        let handle = Shutdown {
            stop: Some(stop_rx),
            _busy: Some(busy_tx),
        };
        (Trigger { stop, busy }, handle)
    }

    /// Tells every task to stop, then waits until all have dropped their handles, at most
    /// `grace`. `false`: some were still busy when the grace period ran out.
    pub async fn shutdown(mut self, grace: Duration) -> bool {
        self.stop.send_replace(true);
        // `recv` returns `None` once every sender (handle) is gone; none is ever sent.
        tokio::time::timeout(grace, self.busy.recv()).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn waits_for_busy_tasks_within_the_grace_period() {
        let (trigger, handle) = Trigger::new();
        let task = handle.clone();
        drop(handle);
        let worker = tokio::spawn(async move {
            task.requested().await;
            // Finishing the work in flight.
            tokio::time::sleep(Duration::from_secs(2)).await;
            drop(task);
        });
        assert!(trigger.shutdown(Duration::from_secs(5)).await);
        worker.await.unwrap();

        let (trigger, handle) = Trigger::new();
        let stuck = tokio::spawn(async move {
            handle.requested().await;
            tokio::time::sleep(Duration::from_secs(60)).await;
            drop(handle);
        });
        assert!(!trigger.shutdown(Duration::from_secs(5)).await);
        stuck.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn never_is_never_requested() {
        let never = Shutdown::never();
        assert!(!never.is_requested());
        let waited = tokio::time::timeout(Duration::from_secs(3600), never.requested()).await;
        assert!(waited.is_err());
    }
}
