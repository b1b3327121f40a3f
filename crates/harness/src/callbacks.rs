//! Callbacks as Safaricom sends them: STK callbacks for the payments [`crate::database`] seeds,
//! and C2B confirmations and validation requests for the paybill.

/// The success callback of seeded payment `i` (amount 10 from 254708374149).
pub fn stk_success(i: usize) -> Vec<u8> {
    format!(
        r#"{{"Body":{{"stkCallback":{{"MerchantRequestID":"bench-{i}","CheckoutRequestID":"ws_CO_bench{i:09}","ResultCode":0,"ResultDesc":"The service request is processed successfully.","CallbackMetadata":{{"Item":[{{"Name":"Amount","Value":10.00}},{{"Name":"MpesaReceiptNumber","Value":"B{i:09}"}},{{"Name":"Balance"}},{{"Name":"TransactionDate","Value":20261122101500}},{{"Name":"PhoneNumber","Value":254708374149}}]}}}}}}}}"#
    )
    .into_bytes()
}

/// The C2B confirmation (or, the same shape, validation request) of customer payment `i`: KES 10
/// to paybill 600000 with account `account`, receipt `C{i:09}`, a masked MSISDN (C2B v2).
pub fn c2b_payment(i: usize, account: &str) -> Vec<u8> {
    format!(
        r#"{{"TransactionType":"Pay Bill","TransID":"C{i:09}","TransTime":"20261206101500","TransAmount":"10.00","BusinessShortCode":"600000","BillRefNumber":"{account}","InvoiceNumber":"","OrgAccountBalance":"","ThirdPartyTransID":"","MSISDN":"2547 ***** 149","FirstName":"JOHN"}}"#
    )
    .into_bytes()
}
