//! The merchant API's OpenAPI document, generated from the handlers' annotations.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::http::{api, c2b, payment_links};
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
    ),
    components(schemas(
        PaymentView, api::CreatePaymentRequest, api::PaymentList, api::ErrorBody, api::ErrorDetail,
        c2b::C2bAccountView, c2b::C2bAccountList, c2b::NewC2bAccount,
        payment_links::CreateLinkRequest, payment_links::LinkView, payment_links::LinkList,
        payment_links::LinkDetail, payment_links::LinkTotalView,
    )),
    modifiers(&ApiKeyAuth),
    tags(
        (name = "payments", description = "M-Pesa payments: STK Push, and C2B payments customers make to the paybill or till"),
        (name = "c2b", description = "C2B validation: the account numbers customers may pay to"),
        (name = "payment links", description = "Links a business sends or prints: a public page where the customer pays (STK Push, or the paybill with the link's account number)"),
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
