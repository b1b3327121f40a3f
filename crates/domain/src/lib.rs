//! The rules of mpesa-gateway with no I/O: what a Kenyan M-Pesa phone number is, what an amount
//! is, which texts Daraja accepts, what a Daraja result code means, and how a payment moves
//! between states. Everything here is deterministic and takes the time as an argument.

pub mod c2b;
pub mod decision;
pub mod eat;
pub mod initiator;
pub mod link;
pub mod money;
pub mod payment;
pub mod payment_request;
pub mod phone;
pub mod result_code;
pub mod state_machine;
pub mod text;

pub use decision::{CallbackClass, PaymentChange, StkCallbackDecision};
pub use initiator::{
    RequestKind, RequestOutcome, RequestSnapshot, RequestStatus, RequestTransition, ResolvePolicy,
};
pub use link::{Lang, LinkAmount, LinkAmountError, LinkStatus};
pub use money::{Amount, AmountBounds, AmountError, Cents, group_thousands, ksh};
pub use payment::{FinalOutcome, PaymentStatus, ReviewReason};
pub use payment_request::{
    FieldError, PaymentRequest, check_email, json_whole_number, parse_payment_request,
};
pub use phone::{Msisdn, PhoneError, mask_checkout_request_id};
pub use result_code::{CallbackVerdict, QueryVerdict, ResultCode};
pub use state_machine::{
    CallbackReport, Deadlines, LastQuery, NextCheck, Outcome, PaymentFieldsMut, PaymentSnapshot,
    QueryReport, ReviewChange, SuccessDetails, Transition, TransitionKind,
};
pub use text::{AccountReference, Description, TextError, TransactionDesc, escape_html};
