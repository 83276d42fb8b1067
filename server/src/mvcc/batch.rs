//! Writes: the mutations of one applied batch, against the applier's
//! write transaction and the store's locked state.

use std::sync::Arc;

use kv_proto::mvccpb::{event::EventType, Event, KeyValue};
use redb::Table;

use super::footprint::row_bytes;
use super::row::{encode_row, fetch_put, KIND_PUT, KIND_TOMBSTONE};
use super::store::{ReadView, State};
use super::{Index, MvccError, Revision};

/// Mutations of one applied batch; every change of one request shares a main revision.
pub struct WriteBatch<'a, 't> {
    state: &'a mut State,
    kv: &'a mut Table<'t, u128, &'static [u8]>,
    main: i64,
    sub: i64,
    /// Events produced so far, in revision order.
    pub events: Vec<Event>,
}

impl<'a, 't> WriteBatch<'a, 't> {
    pub fn new(state: &'a mut State, kv: &'a mut Table<'t, u128, &'static [u8]>) -> Self {
        let main = state.rev + 1;
        WriteBatch {
            state,
            kv,
            main,
            sub: 0,
            events: Vec::new(),
        }
    }

    /// Starts the next request: its changes get the next main revision.
    pub fn begin(&mut self) {
        self.main = self.state.rev + 1;
        self.sub = 0;
    }

    /// Ends the request; the store revision moves only if something changed.
    pub fn end(&mut self) -> i64 {
        if self.sub > 0 {
            self.state.rev = self.main;
        }
        self.state.rev
    }

    fn next_rev(&mut self) -> Revision {
        let r = Revision::new(self.main, self.sub);
        self.sub += 1;
        r
    }

    /// The current value of `key` in this batch, if it is alive: from the
    /// index's cache, else read back from the batch's own transaction.
    pub fn current(&self, key: &[u8]) -> Result<Option<Arc<KeyValue>>, MvccError> {
        let Some(h) = self.state.index.get(key) else {
            return Ok(None);
        };
        let Some(rev) = h.newest_put() else {
            return Ok(None);
        };
        if let Some(kv) = h.cached_at(rev) {
            return Ok(Some(kv.clone()));
        }
        match fetch_put(&*self.kv, rev)? {
            Some(kv) => Ok(Some(Arc::new(kv))),
            // The index says the key is alive at `rev`: its row must be there.
            None => Err(MvccError::Corrupt(format!(
                "{}.{} (the current value's row is missing)",
                rev.main, rev.sub
            ))),
        }
    }

    /// Writes `key`; returns the previous value if the key was alive.
    pub fn put(
        &mut self,
        key: &[u8],
        value: Vec<u8>,
        lease: i64,
    ) -> Result<Option<Arc<KeyValue>>, MvccError> {
        let rev = self.next_rev();
        // The whole previous value: every put event carries it as prev_kv.
        let prev = self.current(key)?;
        let live = self.state.index.get(key).and_then(|h| h.live());
        let (create_revision, version) = match live {
            Some(l) => (l.create_revision, l.version + 1),
            None => (rev.main, 1),
        };
        let kv = Arc::new(KeyValue {
            key: key.to_vec(),
            create_revision,
            mod_revision: rev.main,
            version,
            value,
            lease,
        });
        let row = encode_row(KIND_PUT, &kv);
        self.kv.insert(rev.to_key(), row.as_slice())?;
        self.state.written += row_bytes(row.len());
        self.state.index.put(rev, kv.clone());
        self.events.push(Event {
            r#type: EventType::Put as i32,
            kv: Some((*kv).clone()),
            prev_kv: prev.as_deref().cloned(),
        });
        Ok(prev)
    }

    /// Deletes a live `key` (leaving a tombstone); returns its last value.
    pub fn delete(&mut self, key: &[u8]) -> Result<Option<Arc<KeyValue>>, MvccError> {
        let Some(prev) = self.current(key)? else {
            return Ok(None);
        };
        let rev = self.next_rev();
        let tomb = KeyValue {
            key: key.to_vec(),
            mod_revision: rev.main,
            ..KeyValue::default()
        };
        let row = encode_row(KIND_TOMBSTONE, &tomb);
        self.kv.insert(rev.to_key(), row.as_slice())?;
        self.state.written += row_bytes(row.len());
        self.state.index.tombstone(key, rev);
        self.events.push(Event {
            r#type: EventType::Delete as i32,
            kv: Some(tomb),
            prev_kv: Some((*prev).clone()),
        });
        Ok(Some(prev))
    }

    /// Live keys in `[key, end)` at the head of this batch.
    pub fn live_keys(&self, key: &[u8], end: &[u8]) -> Vec<Vec<u8>> {
        self.state
            .index
            .range(key, end)
            .filter(|(_, h)| h.is_live())
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Compacts history at `main`: older revisions become unreadable at
    /// once; the pass over the index and the deletion of the rows it drops
    /// are handed to the background compactor after this batch commits
    /// (`State::pending`), so a large compaction never holds the applier.
    pub fn compact(&mut self, main: i64) -> Result<(), MvccError> {
        self.state.compact_rev = self.state.compact_rev.max(main);
        match &mut self.state.pending {
            Some((rev, _)) => *rev = (*rev).max(main),
            None => self.state.pending = Some((main, Vec::new())),
        }
        Ok(())
    }
}

impl ReadView for WriteBatch<'_, '_> {
    fn rev(&self) -> i64 {
        if self.sub > 0 {
            self.main
        } else {
            self.state.rev
        }
    }
    fn compact_rev(&self) -> i64 {
        self.state.compact_rev
    }
    fn index(&self) -> &Index {
        &self.state.index
    }
    fn fetch(&self, rev: Revision) -> Result<Option<KeyValue>, MvccError> {
        fetch_put(&*self.kv, rev)
    }
}
