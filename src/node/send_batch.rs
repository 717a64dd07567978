//! Many sends with one commit: what the streaming inlet (`/messages:stream`) hands the node.
//! Each send follows exactly the rules of [`Node::send`] (it is the same code, split where it
//! waits for the commit): the sends of a batch are submitted one after another, so they are
//! numbered and reach the peer in order, then one store barrier covers all of them, and only
//! then is any of them answered. A thousand sends cost one commit wait instead of a thousand,
//! and none is reported accepted before it is durable.

use futures_util::future::join_all;

use super::Node;
use super::deliver::{SendOutcome, Submitted};
use super::error::NodeResult;
use super::message::SendRequest;

/// Sends submitted together whose commit has not been awaited yet. Dropping it unfinished
/// leaves the sends submitted (committed with the store's next batch) but unanswered, as a
/// client that disconnects mid-request does.
pub struct SendBatch {
    node: Node,
    entries: Vec<NodeResult<Submitted>>,
}

impl Node {
    /// Submits `requests` in order. An entry that is already an error (a request that could
    /// not be parsed) keeps its place and is answered with that error, so answers line up
    /// with requests one to one.
    pub async fn begin_sends(&self, requests: Vec<NodeResult<SendRequest>>) -> SendBatch {
        let mut entries = Vec::with_capacity(requests.len());
        for request in requests {
            entries.push(match request {
                Ok(req) => self.submit_send(req).await,
                Err(e) => Err(e),
            });
        }
        SendBatch {
            node: self.clone(),
            entries,
        }
    }
}

impl SendBatch {
    /// Waits for the one commit that makes every submitted send durable, then finishes each
    /// (`sync` sends wait for their replies, side by side). The answers are in request order.
    /// If the commit fails, every send of the batch gets that error, as a single send would.
    pub async fn finish(self) -> Vec<NodeResult<SendOutcome>> {
        let SendBatch { node, entries } = self;
        let needs_commit = entries
            .iter()
            .any(|e| e.as_ref().is_ok_and(|s| s.needs_commit));
        let committed = if needs_commit {
            node.inner.store.flush().await
        } else {
            Ok(())
        };
        let finishing = entries.into_iter().map(|entry| {
            let node = node.clone();
            let committed = committed.clone();
            async move {
                let submitted = entry?;
                committed?;
                node.finish_send(submitted).await
            }
        });
        join_all(finishing).await
    }
}
