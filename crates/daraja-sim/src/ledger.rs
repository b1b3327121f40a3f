//! A small ledger per shortcode, and every payment that moved money, so that balances in B2C
//! results and Account Balance answers agree with what was paid, and Transaction Status and
//! Reversal find receipts from STK, C2B and B2C.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use mpesa_domain::Cents;
use serde::Serialize;

use crate::config::InitialBalances;
use crate::state::BoundedMap;

/// A shortcode's accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Balances {
    pub working: Cents,
    pub utility: Cents,
    pub charges_paid: Cents,
}

impl Balances {
    /// `Working Account|KES|…&Float Account|KES|…&Utility Account|KES|…&Charges Paid Account|KES|…&Organization Settlement Account|KES|…`,
    /// each `name|currency|current|available|reserved|uncleared`.
    pub fn account_balance_text(&self) -> String {
        let account = |name: &str, c: Cents| format!("{name}|KES|{c}|{c}|0.00|0.00");
        [
            account("Working Account", self.working),
            account("Float Account", Cents(0)),
            account("Utility Account", self.utility),
            account("Charges Paid Account", self.charges_paid),
            account("Organization Settlement Account", Cents(0)),
        ]
        .join("&")
    }

    /// The Utility account alone, as Reversal results report it.
    pub fn utility_text(&self) -> String {
        format!("Utility Account|KES|{0}|{0}|0.00|0.00", self.utility)
    }
}

/// What kind of payment a receipt belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentKind {
    /// A customer paid through an STK push.
    Stk,
    /// A customer paid the paybill/till (C2B simulate).
    C2b,
    /// The business paid a customer.
    B2c,
    /// A reversal of an STK or C2B payment.
    Reversal,
}

/// A payment the simulator completed.
#[derive(Debug, Clone, Serialize)]
pub struct PaymentRecord {
    pub receipt: String,
    pub kind: PaymentKind,
    /// The business side.
    pub short_code: String,
    /// The customer side, 12 digits.
    pub msisdn: String,
    pub amount: i64,
    pub completed_at: DateTime<Utc>,
    pub originator_conversation_id: String,
    pub conversation_id: String,
    /// The account reference (STK) or bill reference (C2B).
    pub reference: Option<String>,
    /// Set once a reversal succeeded.
    pub reversed_by: Option<String>,
    /// For a reversal: the receipt it reversed.
    pub original_receipt: Option<String>,
    /// A Buy Goods (till) payment rather than a paybill one.
    pub buy_goods: bool,
}

/// Why money could not move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LedgerRefusal {
    InsufficientFunds,
}

/// Balances by shortcode and payments by receipt, changed together under one lock.
#[derive(Debug)]
pub(crate) struct Books {
    initial: InitialBalances,
    balances: BTreeMap<String, Balances>,
    pub(crate) payments: BoundedMap<String, PaymentRecord>,
}

impl Books {
    pub(crate) fn new(initial: InitialBalances, capacity: usize) -> Self {
        Books {
            initial,
            balances: BTreeMap::new(),
            payments: BoundedMap::new(capacity),
        }
    }

    pub(crate) fn balances(&mut self, short_code: &str) -> Balances {
        *self.account(short_code)
    }

    pub(crate) fn set_balances(&mut self, short_code: &str, balances: Balances) {
        self.balances.insert(short_code.to_owned(), balances);
    }

    pub(crate) fn all_balances(&self) -> BTreeMap<String, Balances> {
        self.balances.clone()
    }

    fn account(&mut self, short_code: &str) -> &mut Balances {
        let initial = self.initial;
        self.balances
            .entry(short_code.to_owned())
            .or_insert(Balances {
                working: initial.working,
                utility: initial.utility,
                charges_paid: initial.charges_paid,
            })
    }

    /// A customer paid the business: Utility goes up.
    pub(crate) fn credit(&mut self, record: PaymentRecord) -> Balances {
        let account = self.account(&record.short_code);
        account.utility = Cents(account.utility.0 + record.amount * 100);
        let after = *account;
        self.payments.insert(record.receipt.clone(), record);
        after
    }

    /// The business paid out (B2C, reversal): Utility goes down, if it can.
    pub(crate) fn debit(&mut self, record: PaymentRecord) -> Result<Balances, LedgerRefusal> {
        let account = self.account(&record.short_code);
        if account.utility.0 < record.amount * 100 {
            return Err(LedgerRefusal::InsufficientFunds);
        }
        account.utility = Cents(account.utility.0 - record.amount * 100);
        let after = *account;
        self.payments.insert(record.receipt.clone(), record);
        Ok(after)
    }

    pub(crate) fn payment(&self, receipt: &str) -> Option<&PaymentRecord> {
        self.payments.get(&receipt.to_owned())
    }

    pub(crate) fn payment_by_originator_id(
        &self,
        originator_conversation_id: &str,
    ) -> Option<&PaymentRecord> {
        self.payments
            .values_in_order()
            .find(|p| p.originator_conversation_id == originator_conversation_id)
    }

    pub(crate) fn clear(&mut self) {
        self.balances.clear();
        self.payments.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(receipt: &str, kind: PaymentKind, amount: i64) -> PaymentRecord {
        PaymentRecord {
            receipt: receipt.into(),
            kind,
            short_code: "600000".into(),
            msisdn: "254708374149".into(),
            amount,
            completed_at: Utc::now(),
            originator_conversation_id: format!("oc-{receipt}"),
            conversation_id: "AG_1".into(),
            reference: None,
            reversed_by: None,
            original_receipt: None,
            buy_goods: false,
        }
    }

    #[test]
    fn balances_follow_payments() {
        let mut b = Books::new(
            InitialBalances {
                working: Cents(0),
                utility: Cents(10_000),
                charges_paid: Cents(0),
            },
            10,
        );
        assert_eq!(
            b.credit(record("A", PaymentKind::C2b, 50)).utility,
            Cents(15_000)
        );
        assert_eq!(
            b.debit(record("B", PaymentKind::B2c, 120)).unwrap().utility,
            Cents(3_000)
        );
        assert_eq!(
            b.debit(record("C", PaymentKind::B2c, 31)),
            Err(LedgerRefusal::InsufficientFunds)
        );
        assert!(b.payment("C").is_none());
        assert_eq!(b.payment_by_originator_id("oc-B").unwrap().receipt, "B");
        assert_eq!(
            b.balances("600000").account_balance_text(),
            "Working Account|KES|0.00|0.00|0.00|0.00&Float Account|KES|0.00|0.00|0.00|0.00&Utility Account|KES|30.00|30.00|0.00|0.00&Charges Paid Account|KES|0.00|0.00|0.00|0.00&Organization Settlement Account|KES|0.00|0.00|0.00|0.00"
        );
        let parsed =
            daraja::wire::parse_account_balance(&b.balances("600000").account_balance_text())
                .unwrap();
        assert_eq!(parsed.len(), 5);
    }
}
