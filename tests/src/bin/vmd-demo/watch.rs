//! Watches the demo namespace (VMDistributed, VMAuth, VMCluster, VMAgent, and the pods the
//! operator makes), feeds every event to the [`Model`] and prints a line whenever the visible
//! state changes.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use futures::{StreamExt, stream::select_all};
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::watcher::{self, Event};
use shared::names::ChildKind;
use tokio::sync::mpsc;
use vmdistributed_runtime::resources;

use crate::stack::Stack;
use crate::timeline::{self, Model, Source};

/// A watch event reduced to what the model needs.
struct Update {
    source: Source,
    object: serde_json::Value,
    deleted: bool,
}

/// The model plus a running watch; prints as it follows.
pub struct Follower {
    model: Model,
    events: mpsc::Receiver<Result<Update, String>>,
    task: tokio::task::JoinHandle<()>,
    clock: Instant,
    header_printed: bool,
}

impl Follower {
    /// Starts the watches in `namespace`.
    pub fn start(client: &Client, namespace: &str, model: Model) -> Self {
        let sources = [
            (Source::Distributed, resources::vmdistributed()),
            (Source::Auth, resources::child(ChildKind::VMAuth)),
            (Source::Cluster, resources::child(ChildKind::VMCluster)),
            (Source::Agent, resources::child(ChildKind::VMAgent)),
            (
                Source::Pod,
                ApiResource::erase::<k8s_openapi::api::core::v1::Pod>(&()),
            ),
        ];
        let streams = sources.into_iter().map(|(source, resource)| {
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), namespace, &resource);
            watcher::watcher(api, watcher::Config::default())
                .map(move |event| (source, event))
                .boxed()
        });
        let mut merged = select_all(streams);
        let (tx, rx) = mpsc::channel(1024);
        let task = tokio::spawn(async move {
            while let Some((source, event)) = merged.next().await {
                let update = match event {
                    Ok(Event::Apply(o) | Event::InitApply(o)) => Ok((o, false)),
                    Ok(Event::Delete(o)) => Ok((o, true)),
                    Ok(Event::Init | Event::InitDone) => continue,
                    // The watcher reconnects by itself; report and go on.
                    Err(e) => Err(format!("{} watch: {e}", source.kind())),
                };
                let message = update.and_then(|(o, deleted)| {
                    serde_json::to_value(&o)
                        .map(|object| Update {
                            source,
                            object,
                            deleted,
                        })
                        .map_err(|e| e.to_string())
                });
                if tx.send(message).await.is_err() {
                    return;
                }
            }
        });
        Follower {
            model,
            events: rx,
            task,
            clock: Instant::now(),
            header_printed: false,
        }
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Times on the following lines count from now; the column header is printed again.
    pub fn restart_clock(&mut self) {
        self.clock = Instant::now();
        self.header_printed = false;
    }

    /// Prints state changes until `done` holds, failing after `timeout` or when a process of the
    /// stack exits.
    pub async fn follow(
        &mut self,
        stack: &Stack,
        timeout: Duration,
        what: &str,
        done: impl Fn(&Model) -> bool,
    ) -> Result<()> {
        let started = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            if done(&self.model) {
                return Ok(());
            }
            tokio::select! {
                update = self.events.recv() => match update {
                    Some(Ok(update)) => {
                        let at = self.clock.elapsed();
                        self.model.apply(update.source, update.object, update.deleted, at);
                        // Events that arrived together make one line: what the user sees is the
                        // state after the burst, every write is still recorded for the checks.
                        while let Ok(Ok(update)) = self.events.try_recv() {
                            let at = self.clock.elapsed();
                            self.model.apply(update.source, update.object, update.deleted, at);
                        }
                        self.print_if_changed();
                    }
                    Some(Err(e)) => {
                        println!("      (watch error, retrying: {e})");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    None => bail!("the watches ended unexpectedly"),
                },
                _ = tick.tick() => {
                    stack.check_alive()?;
                    if started.elapsed() > timeout {
                        bail!(
                            "timed out after {}s waiting for {what}; last state:\n{}",
                            timeout.as_secs(),
                            timeline::format_line(&self.model.layout, self.clock.elapsed(), &self.model.snapshot())
                        );
                    }
                }
            }
        }
    }

    fn print_if_changed(&mut self) {
        if let Some(snapshot) = self.model.changed() {
            if !self.header_printed {
                println!("  {}", timeline::header(&self.model.layout));
                self.header_printed = true;
            }
            println!(
                "  {}",
                timeline::format_line(&self.model.layout, self.clock.elapsed(), &snapshot)
            );
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.task.abort();
    }
}
