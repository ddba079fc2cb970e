//! Leader election through a Kubernetes Lease, so that of several replicas exactly one
//! reconciles while every one serves HTTP.
//!
//! The campaign runs in its own task: it reads the Lease every retry period, takes it
//! when [`lease::may_take`] allows, renews it while leading, and publishes whether this
//! replica leads. The operator stops reconciling the moment that turns false; on shutdown
//! it releases the Lease so the next leader starts within one retry period instead of a
//! whole lease duration. Every request is bounded by the retry period, so a hanging
//! connection cannot keep a leader acting past its renew deadline.

pub mod lease;

use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use lease::{Record, Timing};

/// Where the Lease lives and who this replica is.
#[derive(Clone, Debug)]
pub struct Election {
    pub namespace: String,
    pub lease_name: String,
    pub identity: String,
    pub timing: Timing,
}

/// A running campaign: whether this replica leads, and the handle to end it.
pub struct Leadership {
    leading: watch::Receiver<bool>,
    stop: CancellationToken,
    campaign: JoinHandle<()>,
}

impl Leadership {
    /// Starts campaigning for the Lease.
    pub fn start(client: Client, election: Election) -> Leadership {
        let (publish, leading) = watch::channel(false);
        let stop = CancellationToken::new();
        let campaign = Campaign {
            api: Api::namespaced(client, &election.namespace),
            election,
            seen: None,
            renewed_at: None,
        };
        let campaign = tokio::spawn(campaign.run(publish, stop.clone()));
        Leadership {
            leading,
            stop,
            campaign,
        }
    }

    /// Resolves once this replica leads.
    pub async fn acquired(&mut self) -> Result<()> {
        self.leading
            .wait_for(|leading| *leading)
            .await
            .map(|_| ())
            .map_err(|_| Error::LeadershipLost)
    }

    /// Resolves when this replica no longer leads (or the campaign ended).
    pub async fn lost(&mut self) {
        let _ = self.leading.wait_for(|leading| !*leading).await;
    }

    /// Ends the campaign, releasing the Lease if this replica holds it.
    pub async fn resign(self) {
        self.stop.cancel();
        let _ = self.campaign.await;
    }
}

/// The campaign's memory between two looks at the Lease.
struct Campaign {
    api: Api<Lease>,
    election: Election,
    /// The Lease's resourceVersion as last read, and when this replica first saw it.
    seen: Option<(String, Instant)>,
    /// When the last successful renewal began, while leading.
    renewed_at: Option<Instant>,
}

impl Campaign {
    async fn run(mut self, publish: watch::Sender<bool>, stop: CancellationToken) {
        let timing = self.election.timing;
        loop {
            let attempt = Instant::now();
            match tokio::time::timeout(timing.retry_period, self.try_acquire_or_renew()).await {
                Ok(Ok(true)) => self.renewed_at = Some(attempt),
                Ok(Ok(false)) => self.renewed_at = None,
                Ok(Err(error)) => tracing::warn!(%error, "cannot read or renew the Lease"),
                Err(_) => tracing::warn!("Lease request timed out"),
            }
            if let Some(renewed_at) = self.renewed_at
                && !lease::still_leading(renewed_at, Instant::now(), &timing)
            {
                self.renewed_at = None;
            }
            let leading = self.renewed_at.is_some();
            publish.send_if_modified(|published| {
                let changed = *published != leading;
                if changed {
                    if leading {
                        tracing::info!(identity = %self.election.identity, "acquired the Lease; leading");
                    } else {
                        tracing::warn!(identity = %self.election.identity, "no longer holds the Lease");
                    }
                }
                *published = leading;
                changed
            });
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(timing.retry_period) => {}
            }
        }
        if let Some(renewed_at) = self.renewed_at {
            publish.send_replace(false);
            // Released while the Lease is still ours, however slow the API server: a
            // release is a replace at the version just read, so one that comes too late
            // conflicts with the new holder's and changes nothing. Bounded by the retry
            // period it timed out under load, and the standby waited for the Lease to
            // run out instead (seen in the fault soak: 7.4 s to progress after SIGTERM).
            let still_ours = timing.duration.saturating_sub(renewed_at.elapsed());
            match tokio::time::timeout(still_ours.max(timing.retry_period), self.release()).await {
                Ok(Ok(())) => tracing::info!("released the Lease"),
                Ok(Err(error)) => tracing::warn!(%error, "cannot release the Lease"),
                Err(_) => tracing::warn!("releasing the Lease timed out"),
            }
        }
    }

    /// One look at the Lease: take or renew it if allowed. Ok(true) when this replica
    /// now holds it.
    async fn try_acquire_or_renew(&mut self) -> Result<bool> {
        let name = &self.election.lease_name;
        let now = Instant::now();
        let Some(current) = self.api.get_opt(name).await? else {
            return self.create().await;
        };
        let version = current.resource_version().unwrap_or_default();
        if self.seen.as_ref().is_none_or(|(seen, _)| *seen != version) {
            self.seen = Some((version, now));
        }
        let unchanged_since = self.seen.as_ref().map_or(now, |(_, since)| *since);
        let spec = current.spec.clone().unwrap_or_default();
        let record = Record {
            holder: spec.holder_identity.as_deref(),
            duration: spec
                .lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map(Duration::from_secs),
        };
        let me = self.election.identity.as_str();
        if !lease::may_take(record, me, unchanged_since, now, &self.election.timing) {
            return Ok(false);
        }
        let taking_over = record.holder != Some(me);
        let stamp = MicroTime(Timestamp::now());
        let mut renewed = current;
        renewed.spec = Some(LeaseSpec {
            holder_identity: Some(me.to_owned()),
            lease_duration_seconds: Some(self.duration_seconds()),
            renew_time: Some(stamp.clone()),
            acquire_time: if taking_over {
                Some(stamp)
            } else {
                spec.acquire_time
            },
            lease_transitions: Some(
                spec.lease_transitions.unwrap_or(0)
                    + i32::from(taking_over && record.holder.is_some_and(|h| !h.is_empty())),
            ),
            ..spec
        });
        // The resourceVersion read above makes this a compare-and-swap.
        match self
            .api
            .replace(name, &PostParams::default(), &renewed)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.is_conflict() => Ok(false),
            Err(error) => Err(error.into()),
        }
    }

    async fn create(&mut self) -> Result<bool> {
        let stamp = MicroTime(Timestamp::now());
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.election.lease_name.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.election.identity.clone()),
                lease_duration_seconds: Some(self.duration_seconds()),
                acquire_time: Some(stamp.clone()),
                renew_time: Some(stamp),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        match self.api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.is_already_exists() => Ok(false),
            Err(error) => Err(error.into()),
        }
    }

    /// Hands the Lease back: no holder, so the next replica takes it on its next look.
    async fn release(&mut self) -> Result<()> {
        let Some(mut current) = self.api.get_opt(&self.election.lease_name).await? else {
            return Ok(());
        };
        let spec = current.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.election.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        self.api
            .replace(&self.election.lease_name, &PostParams::default(), &current)
            .await?;
        Ok(())
    }

    fn duration_seconds(&self) -> i32 {
        i32::try_from(self.election.timing.duration.as_secs()).unwrap_or(i32::MAX)
    }
}
