//! STK callbacks as Safaricom sends them, for the payments [`crate::database`] seeds.

/// The success callback of seeded payment `i` (amount 10 from 254708374149).
pub fn stk_success(i: usize) -> Vec<u8> {
    format!(
        r#"{{"Body":{{"stkCallback":{{"MerchantRequestID":"bench-{i}","CheckoutRequestID":"ws_CO_bench{i:09}","ResultCode":0,"ResultDesc":"The service request is processed successfully.","CallbackMetadata":{{"Item":[{{"Name":"Amount","Value":10.00}},{{"Name":"MpesaReceiptNumber","Value":"B{i:09}"}},{{"Name":"Balance"}},{{"Name":"TransactionDate","Value":20261122101500}},{{"Name":"PhoneNumber","Value":254708374149}}]}}}}}}}}"#
    )
    .into_bytes()
}
