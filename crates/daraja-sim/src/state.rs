//! The simulator's memory: tokens, STK transactions and open prompts, C2B registrations, and
//! the initiator bookkeeping. Each part sits behind its own mutex (see `lib.rs`), held only for
//! the few lines that read or change it, never across an `.await`.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// A map that forgets its oldest entries beyond a capacity.
#[derive(Debug)]
pub(crate) struct BoundedMap<K, V> {
    capacity: usize,
    map: HashMap<K, V>,
    order: VecDeque<K>,
}

impl<K: Eq + Hash + Clone, V> BoundedMap<K, V> {
    pub(crate) fn new(capacity: usize) -> Self {
        BoundedMap {
            capacity: capacity.max(1),
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Inserts, and returns what had to go to make room.
    pub(crate) fn insert(&mut self, key: K, value: V) -> Vec<(K, V)> {
        self.insert_keeping(key, value, |_| false)
    }

    /// Inserts, making room by evicting the oldest entries that `keep` does not protect (the
    /// map may stay over capacity while everything in it is protected).
    pub(crate) fn insert_keeping(
        &mut self,
        key: K,
        value: V,
        keep: impl Fn(&V) -> bool,
    ) -> Vec<(K, V)> {
        if self.map.insert(key.clone(), value).is_none() {
            self.order.push_back(key);
        }
        let mut evicted = Vec::new();
        let mut index = 0;
        while self.map.len() > self.capacity && index < self.order.len() {
            if self.map.get(&self.order[index]).is_some_and(&keep) {
                index += 1;
                continue;
            }
            let Some(oldest) = self.order.remove(index) else {
                break;
            };
            if let Some(v) = self.map.remove(&oldest) {
                evicted.push((oldest, v));
            }
        }
        evicted
    }

    pub(crate) fn get(&self, key: &K) -> Option<&V> {
        self.map.get(key)
    }

    pub(crate) fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.map.get_mut(key)
    }

    pub(crate) fn contains(&self, key: &K) -> bool {
        self.map.contains_key(key)
    }

    /// Values, oldest first.
    pub(crate) fn values_in_order(&self) -> impl Iterator<Item = &V> {
        self.order.iter().filter_map(|k| self.map.get(k))
    }

    pub(crate) fn clear(&mut self) {
        self.map.clear();
        self.order.clear();
    }
}

/// Access tokens: which are valid, for whom, until when.
#[derive(Debug)]
pub(crate) struct TokenStore {
    tokens: BoundedMap<String, IssuedToken>,
    latest: HashMap<String, String>,
}

#[derive(Debug, Clone)]
struct IssuedToken {
    consumer_key: String,
    expires_at: DateTime<Utc>,
}

/// Tokens kept at most (with invalidation on, one per consumer key is ever valid anyway).
const MAX_TOKENS: usize = 10_000;

impl TokenStore {
    pub(crate) fn new() -> Self {
        TokenStore {
            tokens: BoundedMap::new(MAX_TOKENS),
            latest: HashMap::new(),
        }
    }

    pub(crate) fn issue(
        &mut self,
        token: String,
        consumer_key: &str,
        expires_at: DateTime<Utc>,
        invalidate_previous: bool,
    ) {
        if let Some(previous) = self.latest.insert(consumer_key.to_owned(), token.clone())
            && invalidate_previous
            && let Some(old) = self.tokens.get_mut(&previous)
        {
            // Expired from the start of time: the entry stays only until it is evicted.
            old.expires_at = DateTime::<Utc>::MIN_UTC;
        }
        self.tokens.insert(
            token,
            IssuedToken {
                consumer_key: consumer_key.to_owned(),
                expires_at,
            },
        );
    }

    /// The consumer key a token was issued to, if it is valid at `now`.
    pub(crate) fn valid(&self, token: &str, now: DateTime<Utc>) -> Option<&str> {
        self.tokens
            .get(&token.to_owned())
            .filter(|t| now < t.expires_at)
            .map(|t| t.consumer_key.as_str())
    }
}

/// Where an STK push stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum StkStatus {
    /// The prompt is open on the phone.
    Pending,
    /// The outcome is known (whether or not its callback was sent).
    Final {
        result_code: String,
        result_desc: String,
        /// The M-Pesa receipt of a success.
        receipt: Option<String>,
        completed_at: DateTime<Utc>,
    },
}

/// An STK push the simulator accepted.
#[derive(Debug, Clone, Serialize)]
pub struct StkTransaction {
    pub checkout_request_id: String,
    pub merchant_request_id: String,
    pub business_short_code: String,
    pub party_b: String,
    pub transaction_type: String,
    pub phone: String,
    pub amount: i64,
    pub account_reference: String,
    pub callback_url: String,
    pub created_at: DateTime<Utc>,
    /// The scenario row that decided it, or `default`.
    pub scenario: String,
    pub status: StkStatus,
}

impl StkTransaction {
    pub fn is_pending(&self) -> bool {
        self.status == StkStatus::Pending
    }

    /// The final result code, once known.
    pub fn result_code(&self) -> Option<&str> {
        match &self.status {
            StkStatus::Final { result_code, .. } => Some(result_code),
            StkStatus::Pending => None,
        }
    }

    pub fn receipt(&self) -> Option<&str> {
        match &self.status {
            StkStatus::Final { receipt, .. } => receipt.as_deref(),
            StkStatus::Pending => None,
        }
    }
}

/// STK transactions and the prompts still open, by phone number.
#[derive(Debug)]
pub(crate) struct StkStore {
    pub(crate) transactions: BoundedMap<String, StkTransaction>,
    open_prompts: HashMap<String, String>,
    /// When each (phone, amount) was last pushed, for the rule behind result code `17`.
    recent_pushes: HashMap<(String, i64), DateTime<Utc>>,
}

impl StkStore {
    pub(crate) fn new(capacity: usize) -> Self {
        StkStore {
            transactions: BoundedMap::new(capacity),
            open_prompts: HashMap::new(),
            recent_pushes: HashMap::new(),
        }
    }

    /// Records a push of `amount` to `phone` at `now`, and says whether the same amount went to
    /// the same phone within `window` before ("Rule limited", `17`). Entries older than the
    /// window are forgotten, so the map holds at most the pushes of one window.
    pub(crate) fn note_push(
        &mut self,
        phone: &str,
        amount: i64,
        now: DateTime<Utc>,
        window: std::time::Duration,
    ) -> bool {
        let Ok(window) = chrono::Duration::from_std(window) else {
            return false;
        };
        if window.is_zero() {
            return false;
        }
        self.recent_pushes.retain(|_, at| now - *at < window);
        self.recent_pushes
            .insert((phone.to_owned(), amount), now)
            .is_some()
    }

    /// The CheckoutRequestID of the prompt open on this phone, if any.
    pub(crate) fn open_prompt(&self, phone: &str) -> Option<&String> {
        self.open_prompts.get(phone)
    }

    pub(crate) fn insert(&mut self, tx: StkTransaction, lock_phone: bool) {
        if lock_phone {
            self.open_prompts
                .insert(tx.phone.clone(), tx.checkout_request_id.clone());
        }
        // A push whose outcome is still to come is never evicted: its callback must go out.
        // (Pending pushes are bounded by time: the prompt timeout.)
        for (id, old) in self.transactions.insert_keeping(
            tx.checkout_request_id.clone(),
            tx,
            StkTransaction::is_pending,
        ) {
            self.release(&old.phone, &id);
        }
    }

    /// Closes the prompt of `checkout_request_id` on `phone` (if it is still the open one).
    pub(crate) fn release(&mut self, phone: &str, checkout_request_id: &str) {
        if self
            .open_prompts
            .get(phone)
            .is_some_and(|id| id == checkout_request_id)
        {
            self.open_prompts.remove(phone);
        }
    }

    pub(crate) fn clear(&mut self) {
        self.transactions.clear();
        self.open_prompts.clear();
        self.recent_pushes.clear();
    }
}

/// Which C2B API version a registration or simulation used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum C2bApiVersion {
    V1,
    V2,
}

/// URLs registered for a shortcode.
#[derive(Debug, Clone, Serialize)]
pub struct C2bRegistration {
    pub short_code: String,
    pub version: C2bApiVersion,
    /// `Completed` or `Cancelled`: what happens when validation does not answer in time.
    pub response_type: String,
    pub confirmation_url: String,
    pub validation_url: String,
    pub registered_at: DateTime<Utc>,
}

/// A shortcode registered for Pull Transactions.
#[derive(Debug, Clone, Serialize)]
pub struct PullRegistration {
    pub short_code: String,
    pub nominated_number: String,
    pub callback_url: String,
    pub registered_at: DateTime<Utc>,
}

/// C2B registrations by shortcode and version, runtime C2B settings, Pull registrations.
#[derive(Debug, Default)]
pub(crate) struct C2bStore {
    registrations: HashMap<(String, C2bApiVersion), C2bRegistration>,
    /// External validation switched on or off at runtime, over the configuration.
    pub(crate) validation: HashMap<String, bool>,
    /// `MSISDN` forms set at runtime, over the configuration.
    pub(crate) msisdn: Option<crate::config::C2bMsisdnModes>,
    pub(crate) pull: HashMap<String, PullRegistration>,
}

impl C2bStore {
    pub(crate) fn get(&self, short_code: &str, version: C2bApiVersion) -> Option<&C2bRegistration> {
        self.registrations.get(&(short_code.to_owned(), version))
    }

    /// The registration a payment to `short_code` notifies: the given version's, else the
    /// latest of any version.
    pub(crate) fn for_payment(
        &self,
        short_code: &str,
        preferred: Option<C2bApiVersion>,
    ) -> Option<C2bRegistration> {
        if let Some(v) = preferred
            && let Some(r) = self.get(short_code, v)
        {
            return Some(r.clone());
        }
        self.registrations
            .values()
            .filter(|r| r.short_code == short_code)
            .max_by_key(|r| r.registered_at)
            .cloned()
    }

    pub(crate) fn put(&mut self, registration: C2bRegistration) {
        self.registrations.insert(
            (registration.short_code.clone(), registration.version),
            registration,
        );
    }

    pub(crate) fn all(&self) -> Vec<C2bRegistration> {
        let mut all: Vec<_> = self.registrations.values().cloned().collect();
        all.sort_by(|a, b| (&a.short_code, a.registered_at).cmp(&(&b.short_code, b.registered_at)));
        all
    }

    pub(crate) fn clear(&mut self) {
        *self = C2bStore::default();
    }
}

/// B2C v3 `OriginatorConversationID`s already used, and initiators' consecutive failures.
#[derive(Debug)]
pub(crate) struct InitiatorStore {
    pub(crate) originator_ids: BoundedMap<String, ()>,
    pub(crate) failures: HashMap<String, u32>,
}

impl InitiatorStore {
    pub(crate) fn new(capacity: usize) -> Self {
        InitiatorStore {
            originator_ids: BoundedMap::new(capacity),
            failures: HashMap::new(),
        }
    }

    pub(crate) fn clear(&mut self) {
        self.originator_ids.clear();
        self.failures.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_map_evicts_the_oldest() {
        let mut m = BoundedMap::new(2);
        assert!(m.insert("a", 1).is_empty());
        assert!(m.insert("b", 2).is_empty());
        assert!(m.insert("a", 3).is_empty(), "replacing does not evict");
        assert_eq!(m.insert("c", 4), vec![("a", 3)]);
        assert_eq!(m.values_in_order().copied().collect::<Vec<_>>(), vec![2, 4]);
    }

    #[test]
    fn a_new_token_invalidates_the_previous_one_when_asked() {
        let now = Utc::now();
        let later = now + chrono::Duration::hours(1);
        let mut t = TokenStore::new();
        t.issue("one".into(), "key", later, true);
        t.issue("two".into(), "key", later, true);
        assert_eq!(t.valid("one", now), None);
        assert_eq!(t.valid("two", now), Some("key"));
        t.issue("three".into(), "key", later, false);
        assert_eq!(t.valid("two", now), Some("key"));
        assert_eq!(t.valid("three", later), None, "expired at its lifetime");
    }

    #[test]
    fn protected_entries_are_not_evicted() {
        let mut m = BoundedMap::new(2);
        m.insert_keeping("a", 1, |v| *v == 1);
        m.insert_keeping("b", 2, |v| *v == 1);
        assert_eq!(m.insert_keeping("c", 3, |v| *v == 1), vec![("b", 2)]);
        assert_eq!(m.insert_keeping("d", 1, |v| *v == 1), vec![("c", 3)]);
        assert!(
            m.insert_keeping("e", 1, |v| *v == 1).is_empty(),
            "over capacity while all are protected"
        );
        assert_eq!(m.values_in_order().count(), 3);
    }

    #[test]
    fn finished_pushes_go_first_and_pending_ones_stay() {
        let mut s = StkStore::new(1);
        let tx = |id: &str, phone: &str| StkTransaction {
            checkout_request_id: id.into(),
            merchant_request_id: "m".into(),
            business_short_code: "174379".into(),
            party_b: "174379".into(),
            transaction_type: "CustomerPayBillOnline".into(),
            phone: phone.into(),
            amount: 1,
            account_reference: "r".into(),
            callback_url: "http://x/cb".into(),
            created_at: Utc::now(),
            scenario: "default".into(),
            status: StkStatus::Pending,
        };
        s.insert(tx("a", "254700000011"), true);
        s.insert(tx("b", "254700000012"), true);
        assert!(
            s.transactions.contains(&"a".to_owned()),
            "pending: kept over capacity"
        );
        let a = s.transactions.get_mut(&"a".to_owned()).unwrap();
        a.status = StkStatus::Final {
            result_code: "0".into(),
            result_desc: "ok".into(),
            receipt: None,
            completed_at: Utc::now(),
        };
        s.release("254700000011", "a");
        s.insert(tx("c", "254700000013"), true);
        assert!(
            !s.transactions.contains(&"a".to_owned()),
            "finished: evicted first"
        );
        assert!(
            s.transactions.contains(&"b".to_owned()) && s.transactions.contains(&"c".to_owned())
        );
        assert_eq!(s.open_prompt("254700000012").map(String::as_str), Some("b"));
    }
}
