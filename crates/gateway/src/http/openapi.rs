//! The merchant API's OpenAPI document, generated from the handlers' annotations.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::http::{api, c2b, money_out, payment_links, receipts};
use crate::money_out::balance::{BalanceAccount, BalanceView};
use crate::money_out::view::{PayoutView, RefundView};
use crate::payments::PaymentView;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "mpesa-gateway merchant API",
        description = "Start M-Pesa STK payments and follow them to their final state. Authenticate with `Authorization: Bearer <API key>` (create one with `mpesa-gateway api-keys create --name NAME`).",
        license(name = "MIT")
    ),
    paths(
        api::create_payment, api::get_payment, api::list_payments, api::refresh_payment,
        c2b::add_account, c2b::list_accounts, c2b::remove_account,
        payment_links::create, payment_links::list, payment_links::show, payment_links::disable,
        money_out::refund_payment, money_out::get_refund, money_out::create_payout,
        money_out::get_payout, money_out::list_payouts, money_out::ask_balance,
        money_out::get_balance, receipts::check_receipt, receipts::show_receipt
    ),
    components(schemas(
        PaymentView, api::CreatePaymentRequest, api::PaymentList, api::ErrorBody, api::ErrorDetail,
        c2b::C2bAccountView, c2b::C2bAccountList, c2b::NewC2bAccount,
        payment_links::CreateLinkRequest, payment_links::LinkView, payment_links::LinkList,
        payment_links::LinkDetail, payment_links::LinkTotalView,
        money_out::RefundRequest, money_out::CreatePayoutBody, money_out::PayoutList,
        money_out::BalanceList, RefundView, PayoutView, BalanceView, BalanceAccount,
        receipts::ReceiptCheckView
    )),
    modifiers(&ApiKeyAuth),
    tags(
        (name = "payments", description = "M-Pesa payments: STK Push, and C2B payments customers make to the paybill or till"),
        (name = "c2b", description = "C2B validation: the account numbers customers may pay to"),
        (name = "payment links", description = "Links a business sends or prints: a public page where the customer pays (STK Push, or the paybill with the link's account number)"),
        (name = "refunds", description = "Refunds: M-Pesa Reversal of a whole payment, once"),
        (name = "payouts", description = "Payouts: B2C payments to customers, with guardrails"),
        (name = "balance", description = "Account Balance of the B2C and paybill/till shortcodes"),
        (name = "receipts", description = "Checking an M-Pesa receipt with Safaricom (Transaction Status): what it says, and the payment it belongs to")
    )
)]
pub struct ApiDoc;

struct ApiKeyAuth;

impl Modify for ApiKeyAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key: mpg_…"))
                    .build(),
            ),
        );
    }
}

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
