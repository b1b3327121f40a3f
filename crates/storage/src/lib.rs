//! Storage for mpesa-gateway.
//!
//! One trait, [`Storage`], and one implementation per backend: SQLite (the embedded default),
//! PostgreSQL and MySQL/MariaDB, all on sqlx. Money is stored as integer shillings (or cents
//! where Safaricom reports them), times as integer Unix milliseconds, ids as text.
//!
//! The write paths that must be atomic — a payment's state change together with its timeline
//! entry, its outbox rows and the raw callback that caused it — are single methods here that run
//! in one transaction. The *decision* of what to write is not made here: callers pass a pure
//! closure (built from `mpesa_domain::state_machine`) that sees the locked, current row and
//! answers with the change. That keeps the rules in the domain crate and the locking here.
//!
//! # Supported databases
//!
//! | backend | minimum | why that version |
//! | --- | --- | --- |
//! | PostgreSQL | **12** | `GENERATED … AS IDENTITY`, `FOR UPDATE SKIP LOCKED`, `ON CONFLICT` |
//! | MySQL | **8.0.1** | first MySQL with `FOR UPDATE SKIP LOCKED` |
//! | MariaDB | **10.6** | first MariaDB with `FOR UPDATE SKIP LOCKED` |
//! | SQLite | **3.35** | the SQL used here (the library is bundled, and newer) |
//!
//! [`connect`] refuses older servers with [`StorageError::Unsupported`]. Several gateway
//! instances may share one PostgreSQL or MySQL/MariaDB database; SQLite is for one instance.
//!
//! # Layout
//!
//! * `store/`: the queries and the write paths, written once for all backends against a small
//!   connection trait (`db.rs`), with `$N` placeholders;
//! * `sqlite.rs`, `postgres.rs`, `mysql.rs`: pools, transactions, error codes, version checks
//!   and the SQL that differs per dialect (upserts, row locks, casts), written out in full;
//! * `migrations/{sqlite,postgres,mysql}/`: the schema, one folder per backend with the same
//!   file names.
//!
//! The tests get a fresh migrated database per test on each backend from the workspace's test
//! harness (`mpesa_harness::database::TestDatabase`).

pub mod model;
pub mod money_out;

mod cursor;
mod db;
mod error;
mod galera;
mod migrations;
mod mysql;
mod postgres;
mod records;
mod server_version;
mod sqlite;
mod store;

pub use error::StorageError;
pub use galera::ClusterStatus;
pub use model::*;
pub use money_out::*;

use std::sync::Arc;

use async_trait::async_trait;

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Unix time in milliseconds.
pub type Millis = i64;

/// Decides what a payment event changes, given the current, locked payment row.
/// Returning `None` writes nothing. Like [`DecideCallback`], it may be called again if the
/// database aborts the transaction for a conflict: keep it pure.
pub type DecidePayment<'a> = &'a (dyn Fn(&Payment) -> Option<PaymentUpdate> + Send + Sync);

/// Decides whether a sign-in attempt may go on, given the failures so far: `None` lets it
/// through, `Some(at)` refuses it until `at` (Unix ms).
pub type DecideSignIn<'a> = &'a (dyn Fn(&SignInFailures) -> Option<Millis> + Send + Sync);

/// Decides what an incoming callback does, given the payment it names (locked), if any.
/// It may be called more than once for one callback: when the database aborts a transaction
/// for a conflict (a deadlock between instances), the whole transaction runs again.
pub type DecideCallback<'a> =
    &'a (dyn Fn(&IncomingCallback, Option<&Payment>) -> CallbackDecision + Send + Sync);

#[async_trait]
pub trait Storage: Send + Sync + 'static {
    // ---- lifecycle -------------------------------------------------------------------------

    fn backend(&self) -> Backend;

    /// Applies pending migrations. Safe to call from several instances at once.
    async fn migrate(&self) -> Result<()>;

    /// Checks that the server is reachable and new enough; returns its version text.
    async fn check_server(&self) -> Result<String>;

    /// A cheap round trip for `/health` (a read).
    async fn ping(&self) -> Result<()>;

    /// The state of the MariaDB Galera node this instance uses, when it uses one: refreshed
    /// every half second; while it is not `serving`, every read and write is refused with
    /// `Unavailable`.
    fn cluster_status(&self) -> Option<ClusterStatus> {
        None
    }

    /// When (Unix ms) and why the last write transaction failed for want of the database
    /// (`Unavailable`: disk full, I/O error, server gone), if one did since start. A small write
    /// may still commit while larger ones fail (SQLite reuses its WAL file's space on a full
    /// disk): `/health` looks at this besides [`Storage::write_probe`].
    fn last_write_failure(&self) -> Option<(Millis, String)>;

    /// Proof for `/health` that a write transaction commits: rewrites this instance's own row of
    /// a small table (so instances never wait for each other), on the same path every write
    /// takes (SQLite: the one writer connection), and deletes rows of instances gone for a week.
    async fn write_probe(&self, instance_id: &str, now: Millis) -> Result<()>;

    /// Waits for in-flight writes and closes the pool (graceful shutdown).
    async fn close(&self);

    // ---- payments --------------------------------------------------------------------------

    /// Stores a new payment (status `initiated`, version 1, a `created` timeline entry) and,
    /// when given, claims its idempotency key, in one transaction. The claim is inserted first
    /// and its unique key decides: of concurrent identical requests exactly one creates a
    /// payment, the others get `InProgress` (or `Replay` once the answer is saved).
    /// `Err(InvalidInput)` for a key longer than 255 bytes.
    async fn create_payment(
        &self,
        payment: NewPayment,
        idempotency: Option<IdempotencyClaim>,
    ) -> Result<CreatePaymentResult>;

    /// Records the answer given for an idempotency key, so a retry gets the same answer; an
    /// answer kept already stays (the first one kept is the answer). `Err(NotFound)` if the key
    /// was never claimed.
    async fn save_idempotent_response(
        &self,
        api_key_id: &str,
        key: &str,
        response: &StoredResponse,
    ) -> Result<()>;

    /// An idempotency key as stored (`scope` is the claim's `api_key_id`), if it was claimed.
    async fn find_idempotency_key(
        &self,
        scope: &str,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>>;

    async fn get_payment(&self, id: &str) -> Result<Option<Payment>>;

    async fn find_payment_by_checkout_request_id(
        &self,
        checkout_request_id: &str,
    ) -> Result<Option<Payment>>;

    /// Newest first, keyset-paginated (by id). `Err(InvalidInput)` for a cursor that is not
    /// one of ours.
    async fn list_payments(
        &self,
        filter: &PaymentFilter,
        page: &PageRequest,
    ) -> Result<Page<Payment>>;

    /// Locks the payment, calls `decide` with its current row and writes the answer (row update,
    /// timeline entry, outbox rows) in one transaction. Returns the payment as written and the
    /// update applied, or `None` when `decide` wrote nothing. `Err(NotFound)` if no such payment.
    async fn update_payment(
        &self,
        id: &str,
        now: Millis,
        decide: DecidePayment<'_>,
    ) -> Result<Option<(Payment, PaymentUpdate)>>;

    /// Books a payment that comes into being settled (a C2B payment a recovery found), with
    /// its timeline entry and outbox rows from `update`, unless its receipt is held already (by
    /// another copy, path or instance). Returns the payment that holds the receipt and whether
    /// it is this one.
    async fn book_payment(
        &self,
        payment: &Payment,
        update: &PaymentUpdate,
        now: Millis,
    ) -> Result<(Payment, bool)>;

    /// Timeline of one payment, oldest first.
    async fn payment_events(&self, payment_id: &str) -> Result<Vec<PaymentEvent>>;

    // ---- money out: initiator requests, refunds, payouts -------------------------------------

    /// Stores a new initiator request as `sending` (with a `stored` timeline entry) before it is
    /// sent. A repeated OriginatorConversationID is refused with `Conflict`.
    async fn create_initiator_request(
        &self,
        request: NewInitiatorRequest,
        next_check_at: Option<Millis>,
    ) -> Result<InitiatorRequest>;

    async fn get_initiator_request(&self, id: &str) -> Result<Option<InitiatorRequest>>;

    /// The request a result names (by OriginatorConversationID, then ConversationID).
    async fn find_initiator_request(
        &self,
        ids: &InitiatorCallbackIds,
    ) -> Result<Option<InitiatorRequest>>;

    async fn initiator_requests_for(
        &self,
        purpose: &str,
        owner_id: &str,
    ) -> Result<Vec<InitiatorRequest>>;

    /// Locks the request, asks `decide`, writes its answer and timeline entry. An answer that
    /// books Daraja's receipt with [`InitiatorUpdate::if_receipt_held`] takes its turn with
    /// settlements by hand and, when a person recorded that receipt by hand on another request,
    /// writes what `if_receipt_held` makes of it instead (also in the callback paths below).
    async fn update_initiator_request(
        &self,
        id: &str,
        now: Millis,
        decide: DecideInitiator<'_>,
    ) -> Result<Option<(InitiatorRequest, InitiatorUpdate)>>;

    /// A request held for a person, settled by hand, with its payout or refund, in one
    /// transaction, one settlement by hand at a time (on every instance): locks the request and
    /// asks `decide`; a receipt it records that is already recorded elsewhere (a payment, a
    /// payout, a reversal, another request, one settled a moment ago) is `Conflict`
    /// (`receipt_in_use`); then locks the owner and asks `owner` (`None` is `Conflict`: nothing
    /// is written); the owner counts as told. `Ok(None)`: `decide` refused. A person's
    /// acknowledgement of a contradiction is written the same way (no receipt, the owner's
    /// update only a timeline entry).
    async fn settle_initiator_request(
        &self,
        id: &str,
        now: Millis,
        decide: DecideInitiator<'_>,
        owner: SettleOwner<'_>,
    ) -> Result<Option<InitiatorRequest>>;

    /// Stores a result or queue-timeout callback raw and applies it to the request it names, in
    /// one transaction: an answered callback is committed, a duplicate changes nothing, and one
    /// that names no request is kept (outcome `unmatched`), never applied.
    async fn ingest_initiator_callback(
        &self,
        raw: IncomingCallback,
        ids: InitiatorCallbackIds,
        now: Millis,
        decide: DecideInitiatorCallback<'_>,
    ) -> Result<IngestedInitiatorCallback>;

    /// Applies, in one transaction, the results and notices stored as `unmatched` that name this
    /// request (they came before its acknowledgement was recorded). Returns the request when one
    /// of them made it final.
    async fn rematch_initiator_callbacks(
        &self,
        request_id: &str,
        now: Millis,
        decide: RedecideInitiatorCallback<'_>,
    ) -> Result<Option<InitiatorRequest>>;

    /// Claims open requests whose check is due (several instances never claim the same one).
    async fn claim_due_initiator_requests(
        &self,
        now: Millis,
        lease_until: Millis,
        limit: u32,
    ) -> Result<Vec<InitiatorRequest>>;

    /// Final requests whose owner was not told yet, finalized at or before `before`.
    async fn unnotified_initiator_requests(
        &self,
        before: Millis,
        limit: u32,
    ) -> Result<Vec<InitiatorRequest>>;

    async fn mark_initiator_owner_notified(&self, id: &str, now: Millis) -> Result<()>;

    /// The timeline of an initiator request, refund or payout.
    async fn money_out_events(&self, subject_id: &str) -> Result<Vec<MoneyOutEvent>>;

    /// Claims the idempotency key (if any), locks the payment, asks `decide`, and stores the
    /// refund as `pending` with its timeline entries, in one transaction. A refused request
    /// frees the key.
    async fn create_refund(
        &self,
        refund: NewRefund,
        idempotency: Option<IdempotencyClaim>,
        decide: DecideRefund<'_>,
    ) -> Result<CreateRefundResult>;

    async fn get_refund(&self, id: &str) -> Result<Option<Refund>>;

    /// Pending refunds last changed in `changed` (from, up to; both included) for which no
    /// request of `purpose` is stored: a process that stopped between a refund's commit and the
    /// storing of its Reversal left them. Nothing was sent for them (a request is stored before
    /// it is sent).
    async fn refunds_without_request(
        &self,
        purpose: &str,
        changed: (Millis, Millis),
        limit: u32,
    ) -> Result<Vec<Refund>>;

    async fn refunds_for_payment(&self, payment_id: &str) -> Result<Vec<Refund>>;

    /// Locks the refund, asks `decide`, writes the change, its timeline entries (also on the
    /// payment's timeline) and outbox rows in one transaction.
    async fn update_refund(
        &self,
        id: &str,
        now: Millis,
        decide: DecideRefundUpdate<'_>,
    ) -> Result<Option<(Refund, RefundUpdate)>>;

    // ---- receipt checks (Transaction Status of a receipt code) -------------------------------

    /// Stores a receipt check as `pending`, in flight for its code. `Conflict` when another
    /// check of the code is in flight (see [`Storage::active_receipt_check`]).
    async fn create_receipt_check(&self, check: NewReceiptCheck) -> Result<ReceiptCheck>;

    async fn get_receipt_check(&self, id: &str) -> Result<Option<ReceiptCheck>>;

    /// The check of `code` in flight, if any.
    async fn active_receipt_check(&self, code: &str) -> Result<Option<ReceiptCheck>>;

    /// The checks of `code`, newest first.
    async fn receipt_checks_for(&self, code: &str, limit: u32) -> Result<Vec<ReceiptCheck>>;

    /// Locks the check, asks `decide`, writes the change, its timeline entry and outbox rows in
    /// one transaction (a final check leaves its code free for a new check).
    async fn update_receipt_check(
        &self,
        id: &str,
        now: Millis,
        decide: DecideReceiptCheck<'_>,
    ) -> Result<Option<(ReceiptCheck, ReceiptCheckUpdate)>>;

    /// Claims the idempotency key (if any), reserves the amount in the day's limit (if any; one
    /// conditional UPDATE, shared by every instance on the database), and stores the payout.
    async fn create_payout(
        &self,
        payout: NewPayout,
        idempotency: Option<IdempotencyClaim>,
        daily_limit: Option<i64>,
    ) -> Result<CreatePayoutResult>;

    async fn get_payout(&self, id: &str) -> Result<Option<Payout>>;

    /// Pending payouts last changed in `changed` for which no request of `purpose` is stored
    /// (as [`Storage::refunds_without_request`]).
    async fn payouts_without_request(
        &self,
        purpose: &str,
        changed: (Millis, Millis),
        limit: u32,
    ) -> Result<Vec<Payout>>;

    async fn list_payouts(&self, filter: &PayoutFilter, page: &PageRequest)
    -> Result<Page<Payout>>;

    async fn update_payout(
        &self,
        id: &str,
        now: Millis,
        decide: DecidePayoutUpdate<'_>,
    ) -> Result<Option<(Payout, PayoutUpdate)>>;

    /// The total of payouts awaiting approval, in shillings.
    async fn payouts_awaiting_approval_total(&self) -> Result<i64>;

    // ---- callbacks -------------------------------------------------------------------------

    /// Stores every raw callback of the batch and applies each to the payment it names, in ONE
    /// transaction (group commit: one fsync for the whole batch). Each item is isolated (a
    /// savepoint): an item that fails is rolled back alone and reported as `Err` in its slot,
    /// and the others still commit. The outer `Err` means nothing was committed.
    ///
    /// Items are processed in the order of their CheckoutRequestID (so instances sharing a
    /// database lock payments in the same order) and reported in the batch's order. A
    /// CheckoutRequestID longer than 255 bytes or holding a NUL cannot be one of ours: the
    /// callback is stored and matched to no payment.
    ///
    /// When the database aborts the batch for a conflict (a deadlock; on Galera, a
    /// certification failure), the raw callbacks are stored alone, which cannot conflict, and
    /// reported `Received`: acknowledged, to be applied with [`Storage::reapply_callback`].
    async fn ingest_callbacks(
        &self,
        batch: &[IncomingCallback],
        now: Millis,
        decide: DecideCallback<'_>,
    ) -> Result<Vec<Result<IngestedCallback>>>;

    /// Callbacks stored raw (`received`) at or before `received_before` and not applied yet,
    /// oldest first: [`Storage::ingest_callbacks`] stores a batch so, and acknowledges it, when
    /// applying it conflicted with another transaction. Each is applied with
    /// [`Storage::reapply_callback`].
    async fn received_callbacks(
        &self,
        received_before: Millis,
        limit: u32,
    ) -> Result<Vec<RawCallback>> {
        self.received_callbacks_after(received_before, None, limit)
            .await
    }

    /// [`Storage::received_callbacks`] from the one after `after_id` on: a sweep pages through
    /// them all, so that the first `limit` (C2B confirmations waiting for an STK payment a
    /// person has yet to settle) cannot hide the rest for ever.
    async fn received_callbacks_after(
        &self,
        received_before: Millis,
        after_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<RawCallback>>;

    /// Unmatched STK callbacks whose CheckoutRequestID now belongs to a payment (the callback
    /// came before the push's answer was recorded). Oldest first.
    async fn rematchable_callbacks(&self, limit: u32) -> Result<Vec<RawCallback>>;

    /// Applies an already stored callback again (see [`Storage::rematchable_callbacks`]) and
    /// updates its recorded outcome, in one transaction. Only a callback that has not acted yet
    /// (`unmatched`, `unparseable`, `stored`, `received`) is decided again; for any other the recorded
    /// outcome is returned and nothing is written, so two instances racing to reapply the same
    /// callback apply it once. `Err(NotFound)` if there is no such callback.
    async fn reapply_callback(
        &self,
        callback_id: &str,
        now: Millis,
        decide: DecideCallback<'_>,
    ) -> Result<IngestedCallback>;

    async fn get_callback(&self, id: &str) -> Result<Option<RawCallback>>;

    async fn list_callbacks(
        &self,
        filter: &CallbackFilter,
        page: &PageRequest,
    ) -> Result<Page<RawCallback>>;

    async fn callbacks_for_payment(&self, payment_id: &str) -> Result<Vec<RawCallback>>;

    // ---- reconciler ------------------------------------------------------------------------

    /// Claims up to `limit` open payments (`initiated`/`pending`) whose `next_check_at` is due,
    /// moving their `next_check_at` to `lease_until` so that other instances skip them. Uses
    /// `FOR UPDATE SKIP LOCKED` on PostgreSQL and MariaDB.
    async fn claim_due_checks(
        &self,
        now: Millis,
        lease_until: Millis,
        limit: u32,
    ) -> Result<Vec<Payment>>;

    // ---- outbox ----------------------------------------------------------------------------

    /// Claims up to `limit` pending events due at `now` for `owner` until `lease_until`
    /// (`FOR UPDATE SKIP LOCKED`; SQLite: one writer). An event whose lease expired (a worker
    /// died mid-delivery) is claimable again.
    async fn claim_outbox(
        &self,
        now: Millis,
        owner: &str,
        lease_until: Millis,
        limit: u32,
    ) -> Result<Vec<OutboxEvent>> {
        self.claim_outbox_on(now, owner, lease_until, limit, &Channel::ALL)
            .await
    }

    /// [`Storage::claim_outbox`] of the events on `channels` only: a worker claims what it can
    /// deliver, and leaves another channel's events to the instances that have it.
    async fn claim_outbox_on(
        &self,
        now: Millis,
        owner: &str,
        lease_until: Millis,
        limit: u32,
        channels: &[Channel],
    ) -> Result<Vec<OutboxEvent>>;

    /// Records one delivery attempt and its consequence (delivered, retry at, dead, blocked),
    /// only if `owner` still holds the lease. Returns false when the lease was lost. The lease
    /// stays `owner`'s until another worker claims the event, even past `lease_until`.
    /// `delivered_at` is the attempt's start plus its duration; the lease is released.
    async fn record_delivery(
        &self,
        event_id: &str,
        owner: &str,
        attempt: &DeliveryAttempt,
    ) -> Result<bool>;

    /// [`Storage::record_delivery`] for several attempts of `owner`'s in ONE transaction (one
    /// commit, one fsync, however many attempts): each `true` where `owner` still held the
    /// event's lease, `false` where it did not or the event no longer exists. The outer `Err`
    /// means nothing was recorded.
    async fn record_deliveries(
        &self,
        owner: &str,
        attempts: &[(String, DeliveryAttempt)],
    ) -> Result<Vec<bool>>;

    /// Puts a dead-lettered (or blocked) event back in the queue, due now. False if it is not dead.
    /// Its `attempts` counter starts again from 0, so it gets a full retry schedule; the
    /// attempt log keeps its history and numbering.
    async fn retry_outbox_event(&self, event_id: &str, now: Millis) -> Result<bool>;

    /// Inserts outbox events outside a payment change (test messages, alerts about callbacks
    /// that match no payment). Events whose `dedupe_key` exists are skipped.
    async fn enqueue_outbox(&self, events: Vec<NewOutboxEvent>) -> Result<()>;

    async fn get_outbox_event(&self, id: &str) -> Result<Option<OutboxEvent>>;

    async fn list_outbox(
        &self,
        filter: &OutboxFilter,
        page: &PageRequest,
    ) -> Result<Page<OutboxEvent>>;

    async fn outbox_for_payment(&self, payment_id: &str) -> Result<Vec<OutboxEvent>>;

    async fn outbox_attempts(&self, event_id: &str) -> Result<Vec<OutboxAttempt>>;

    /// Count of events per status, for `/health` and the dashboard (`due` by the system clock).
    async fn outbox_counts(&self) -> Result<OutboxCounts>;

    // ---- API keys --------------------------------------------------------------------------

    async fn create_api_key(&self, key: &ApiKey) -> Result<()>;
    /// An active (not revoked) key by the SHA-256 hex of its secret.
    async fn find_api_key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>>;
    async fn list_api_keys(&self) -> Result<Vec<ApiKey>>;
    /// By id or by unique name. False if no active key matched.
    async fn revoke_api_key(&self, id_or_name: &str, now: Millis) -> Result<bool>;
    /// Sets `last_used_at`, at most once a minute per key (API traffic must not turn every
    /// request into a write).
    async fn touch_api_key(&self, id: &str, now: Millis) -> Result<()>;

    // ---- admin users and sessions ------------------------------------------------------------

    /// Creates the user, or replaces the password hash of an existing one and ends all of that
    /// user's sessions, in one transaction. Returns true when created.
    async fn upsert_admin_user(&self, user: &AdminUser) -> Result<bool>;
    /// Removes the user and all of their sessions. False if there was no such user.
    async fn delete_admin_user(&self, username: &str) -> Result<bool>;
    /// Ends every session of the user (signed out everywhere); how many ended.
    async fn delete_sessions_of(&self, username: &str) -> Result<u64>;
    async fn find_admin_user(&self, username: &str) -> Result<Option<AdminUser>>;
    async fn list_admin_users(&self) -> Result<Vec<AdminUser>>;
    async fn create_session(&self, session: &AdminSession) -> Result<()>;
    /// A session by the SHA-256 hex of its token, if not expired at `now`.
    async fn find_session(&self, token_hash: &str, now: Millis) -> Result<Option<AdminSession>>;
    async fn delete_session(&self, token_hash: &str) -> Result<()>;
    async fn delete_expired_sessions(&self, now: Millis) -> Result<u64>;

    // ---- sign-in failures ----------------------------------------------------------------------

    /// One dashboard sign-in attempt for (`username`, `address`), in one transaction: reads the
    /// failures of the pair (locked) and of the address since `address_since`, and asks
    /// `decide`. When it lets the attempt through (`None`), the attempt is counted as a failure
    /// until [`Storage::clear_sign_in_failures`] says the password was right, so parallel
    /// attempts cannot slip past the count. Returns `decide`'s answer. `username` is stored as
    /// given (the caller normalises it); both are cut to 64 characters.
    async fn begin_sign_in(
        &self,
        username: &str,
        address: &str,
        now: Millis,
        address_since: Millis,
        decide: DecideSignIn<'_>,
    ) -> Result<Option<Millis>>;
    /// A successful sign-in: the pair starts afresh.
    async fn clear_sign_in_failures(&self, username: &str, address: &str) -> Result<()>;
    /// Forgets failures older than `before`; how many pairs went.
    async fn delete_sign_in_failures_before(&self, before: Millis) -> Result<u64>;

    // ---- C2B accounts --------------------------------------------------------------------------

    /// Registers an account number customers may pay to (C2B_REQUIRE_KNOWN_ACCOUNT). Adding one
    /// that is there (in any case) changes nothing; `true` when it was added.
    async fn add_c2b_account(&self, account: &str, now: Millis) -> Result<bool>;
    async fn remove_c2b_account(&self, account: &str) -> Result<bool>;
    /// Whether an account number (trimmed, in any case) is registered.
    async fn is_c2b_account(&self, account: &str) -> Result<bool>;
    async fn list_c2b_accounts(&self) -> Result<Vec<C2bAccount>>;
    /// The payment that holds a receipt, whichever channel it came by.
    async fn find_payment_by_receipt(&self, receipt: &str) -> Result<Option<Payment>>;

    // ---- Telegram ----------------------------------------------------------------------------

    async fn link_telegram_chat(&self, link: &TelegramLink) -> Result<()>;
    async fn find_telegram_link(&self, chat_id: i64) -> Result<Option<TelegramLink>>;
    /// The chat linked to a phone number, if any (for customer receipts).
    async fn find_telegram_chat_by_phone(&self, phone: &str) -> Result<Option<TelegramLink>>;
    /// The phones of chats that have not blocked the bot (to match a hashed C2B MSISDN).
    async fn linked_phones(&self) -> Result<Vec<String>>;
    async fn unlink_telegram_chat(&self, chat_id: i64) -> Result<bool>;
    /// Records that a chat blocked the bot (403) so nothing more is sent to it.
    async fn mark_telegram_chat_blocked(&self, chat_id: i64, now: Millis) -> Result<()>;
    /// Links a chat to a phone number and removes every other chat's link to that number, in one
    /// transaction (the bot's "one chat, one number"). Returns how many other links went.
    async fn link_telegram_chat_exclusively(&self, link: &TelegramLink) -> Result<u64>;
    /// Records (or replaces) the status message of a payment. `Err(NotFound)` if there is no
    /// such payment.
    async fn put_telegram_status_message(&self, message: &TelegramStatusMessage) -> Result<()>;
    async fn find_telegram_status_message(
        &self,
        payment_id: &str,
    ) -> Result<Option<TelegramStatusMessage>>;

    // ---- settings and leases -----------------------------------------------------------------

    async fn get_setting(&self, key: &str) -> Result<Option<String>>;
    async fn put_setting(&self, key: &str, value: &str, now: Millis) -> Result<()>;
    /// Stores `value` unless the key exists; returns the value that is stored afterwards. Lets
    /// several instances agree on a generated secret.
    async fn put_setting_if_absent(&self, key: &str, value: &str, now: Millis) -> Result<String>;

    /// Takes or renews a named lease (e.g. "telegram-poller") for `owner` until `until`. True
    /// when `owner` holds it afterwards: it was free, expired, or already `owner`'s.
    async fn acquire_lease(
        &self,
        name: &str,
        owner: &str,
        now: Millis,
        until: Millis,
    ) -> Result<bool>;
    async fn release_lease(&self, name: &str, owner: &str) -> Result<()>;

    // ---- payment links -------------------------------------------------------------------------

    /// Stores a link under the first candidate account number that no open link holds (expired
    /// links give theirs back first). `Err(Conflict)` when every candidate is taken.
    async fn create_payment_link(&self, link: &NewPaymentLink) -> Result<PaymentLink>;
    async fn get_payment_link(&self, id: &str) -> Result<Option<PaymentLink>>;
    async fn find_payment_link_by_slug(&self, slug: &str) -> Result<Option<PaymentLink>>;
    /// The open link (active and not expired at `now`) with this account number: what a C2B
    /// payment's BillRefNumber names.
    async fn find_open_payment_link_by_account(
        &self,
        account_number: &str,
        now: Millis,
    ) -> Result<Option<PaymentLink>>;
    /// The single-use link with this account number that was paid most recently: a C2B payment
    /// to its account after it was paid is its second payment (held, refund suggested).
    async fn find_paid_payment_link_by_account(
        &self,
        account_number: &str,
    ) -> Result<Option<PaymentLink>>;
    /// Newest first, keyset-paginated.
    async fn list_payment_links(&self, page: &PageRequest) -> Result<Page<PaymentLink>>;
    /// Disables an active (or expired) link; a paid or disabled one is left as it is. Returns
    /// the link as it is afterwards, `None` if there is no such link.
    async fn disable_payment_link(&self, id: &str, now: Millis) -> Result<Option<PaymentLink>>;
    /// How many payments a link has, and what its completed ones add up to.
    async fn payment_link_totals(&self, id: &str) -> Result<LinkTotals>;

    /// Counts one hit in every counter of `limits` (fixed windows, shared by every instance
    /// using the database), unless one is full: then nothing is counted and the answer is when
    /// it frees up (Unix ms).
    async fn hit_rate_limits(&self, limits: &[RateLimit], now: Millis) -> Result<Option<Millis>>;
    /// Forgets counters whose window started before `before`.
    async fn delete_rate_limits_before(&self, before: Millis) -> Result<u64>;

    // ---- statistics --------------------------------------------------------------------------

    /// Counts and sums of payments created in `[from, to)`, by status (every status is
    /// listed, with zeros), failed ones by result code, and how many of them need review.
    async fn payment_stats(&self, from: Millis, to: Millis) -> Result<PaymentStats>;

    /// Completed volume per East Africa Time day for payments created in `[from, to)`.
    async fn daily_volume(&self, from: Millis, to: Millis) -> Result<Vec<DailyVolume>>;
}

/// Which database is behind a [`Storage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    MySql,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
            Backend::MySql => "mysql",
        }
    }
}

/// Opens the storage that a `DATABASE_URL` names: `sqlite://relative/path.db`,
/// `sqlite:///absolute/path.db` (created if missing), `sqlite::memory:`,
/// `postgres://…`/`postgresql://…`, `mysql://…`/`mariadb://…`.
///
/// Connects and checks the server version ([`Storage::check_server`]); it does not migrate
/// (call [`Storage::migrate`]). An unreachable server is `Unavailable`, an old one or an
/// unknown scheme `Unsupported`. Errors never quote the URL (it may hold a password).
pub async fn connect(database_url: &str, options: &ConnectOptions) -> Result<Arc<dyn Storage>> {
    let scheme = database_url
        .split_once(':')
        .map_or("", |(scheme, _)| scheme)
        .to_ascii_lowercase();
    let storage: Arc<dyn Storage> = match scheme.as_str() {
        "sqlite" => Arc::new(store::SqlStorage::new(
            sqlite::SqliteDriver::connect(database_url, options).await?,
        )),
        "postgres" | "postgresql" => Arc::new(store::SqlStorage::new(
            postgres::PostgresDriver::connect(database_url, options).await?,
        )),
        "mysql" | "mariadb" => Arc::new(store::SqlStorage::new(
            mysql::MySqlDriver::connect(database_url, options).await?,
        )),
        _ => {
            return Err(StorageError::Unsupported(
                "the database URL must start with sqlite:, postgres://, postgresql://, mysql:// or mariadb://".into(),
            ));
        }
    };
    let version = storage.check_server().await?;
    tracing::info!(backend = storage.backend().as_str(), %version, "database connected");
    Ok(storage)
}

/// Pool settings shared by all backends.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub max_connections: u32,
    pub acquire_timeout: std::time::Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            max_connections: 10,
            acquire_timeout: std::time::Duration::from_secs(5),
        }
    }
}
