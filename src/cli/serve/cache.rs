//! The server's state cache: recurrent states keyed by the exact token ids that produced them,
//! least recently used first out, bounded in bytes. Mamba's whole context is its fixed-size
//! state (a few MB), so a conversation's next turn restores the state of everything before it
//! and prefills only what is new.

use std::sync::Arc;

struct Entry {
    tokens: Vec<u32>,
    state: Arc<Vec<u8>>,
    last_used: u64,
}

pub struct StateCache {
    entries: Vec<Entry>,
    bytes: usize,
    limit_bytes: usize,
    clock: u64,
}

impl StateCache {
    pub fn new(limit_bytes: usize) -> Self {
        StateCache { entries: Vec::new(), bytes: 0, limit_bytes, clock: 0 }
    }

    /// The longest cached key that is a prefix of `tokens`: its length and state.
    pub fn longest_prefix(&mut self, tokens: &[u32]) -> Option<(usize, Arc<Vec<u8>>)> {
        self.clock += 1;
        let clock = self.clock;
        let best = self.entries.iter_mut().filter(|e| tokens.starts_with(&e.tokens)).max_by_key(|e| e.tokens.len())?;
        best.last_used = clock;
        Some((best.tokens.len(), best.state.clone()))
    }

    /// Keeps `state` as the state after `tokens`, evicting the least recently used entries
    /// until it fits. An empty key, or a state larger than the whole cache, is not kept.
    pub fn insert(&mut self, tokens: &[u32], state: Vec<u8>) {
        if tokens.is_empty() || state.len() > self.limit_bytes {
            return;
        }
        self.clock += 1;
        if let Some(i) = self.entries.iter().position(|e| e.tokens == tokens) {
            let old = self.entries.swap_remove(i);
            self.bytes -= old.state.len();
        }
        while self.bytes + state.len() > self.limit_bytes {
            let Some(oldest) = self.entries.iter().enumerate().min_by_key(|(_, e)| e.last_used).map(|(i, _)| i) else { break };
            let evicted = self.entries.swap_remove(oldest);
            self.bytes -= evicted.state.len();
        }
        self.bytes += state.len();
        self.entries.push(Entry { tokens: tokens.to_vec(), state: Arc::new(state), last_used: self.clock });
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_longest_prefix_and_evicts_the_least_recently_used() {
        let mut cache = StateCache::new(30);
        cache.insert(&[1, 2], vec![0; 10]);
        cache.insert(&[1, 2, 3, 4], vec![1; 10]);
        cache.insert(&[7], vec![2; 10]);
        assert_eq!(cache.longest_prefix(&[1, 2, 3, 4, 5]).map(|(n, s)| (n, s[0])), Some((4, 1)));
        assert_eq!(cache.longest_prefix(&[1, 2, 9]).map(|(n, _)| n), Some(2));
        assert!(cache.longest_prefix(&[2, 1]).is_none());
        // [7] is now the least recently used: a fourth entry evicts it.
        cache.insert(&[8, 8], vec![3; 10]);
        assert_eq!(cache.len(), 3);
        assert!(cache.longest_prefix(&[7]).is_none());
        // A state larger than the cache is not kept; the same key replaces its entry.
        cache.insert(&[9], vec![0; 31]);
        cache.insert(&[8, 8], vec![4; 5]);
        assert_eq!(cache.longest_prefix(&[8, 8]).map(|(n, s)| (n, s.len())), Some((2, 5)));
        assert_eq!(cache.len(), 3);
    }
}
