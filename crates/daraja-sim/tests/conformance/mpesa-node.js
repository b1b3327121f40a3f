// Drives the Daraja simulator with Safaricom's own Node library, `mpesa-node` (pinned in
// package.json beside this file), one operation per run:
//   node mpesa-node.js <operation> [arguments…]
// Settings come from the environment (DARAJA_BASE_URL, RECEIVER_URL, CERT_PATH, CONSUMER_KEY,
// CONSUMER_SECRET, INITIATOR_PASSWORD, PASSKEY). Prints one JSON line: what the library
// returned (`ok`, the HTTP `status`, the answer's `data`), or what it threw.
'use strict'

const Mpesa = require('mpesa-node')

const env = (name) => {
  const value = process.env[name]
  if (!value) throw new Error(`${name} is not set`)
  return value
}

const mpesa = new Mpesa({
  consumerKey: env('CONSUMER_KEY'),
  consumerSecret: env('CONSUMER_SECRET'),
  environment: 'sandbox',
  shortCode: '600000',
  initiatorName: 'testapi',
  lipaNaMpesaShortCode: 174379,
  lipaNaMpesaShortPass: env('PASSKEY'),
  securityCredential: env('INITIATOR_PASSWORD'),
  certPath: env('CERT_PATH')
})
// The library builds its base URL from `environment`; point it at the simulator.
mpesa.baseURL = env('DARAJA_BASE_URL')
const hook = (name) => `${env('RECEIVER_URL')}/hooks/${name}`

const operations = {
  oauth: () => mpesa.oAuth(),
  push: (phone, amount) => mpesa.lipaNaMpesaOnline(Number(phone), Number(amount), hook('stk'), 'INV42'),
  query: (checkoutRequestId) => mpesa.lipaNaMpesaQuery(checkoutRequestId),
  c2bRegister: () => mpesa.c2bRegister(hook('confirm'), hook('validate')),
  c2bSimulate: (phone, amount, account) => mpesa.c2bSimulate(Number(phone), Number(amount), account),
  b2c: (phone, amount) =>
    mpesa.b2c(600000, Number(phone), Number(amount), hook('timeout'), hook('result')),
  status: (receipt) => mpesa.transactionStatus(receipt, 600000, '4', hook('timeout'), hook('result')),
  balance: () => mpesa.accountBalance(600000, '4', hook('timeout'), hook('result')),
  reversal: (receipt, amount) => mpesa.reversal(receipt, Number(amount), hook('timeout'), hook('result'))
}

const [operation, ...args] = process.argv.slice(2)
const run = operations[operation]
if (!run) {
  console.error(`unknown operation ${operation}; one of ${Object.keys(operations).join(', ')}`)
  process.exit(2)
}
run(...args).then(
  (response) => console.log(JSON.stringify({ ok: true, status: response.status, data: response.data })),
  (error) => console.log(JSON.stringify({
    ok: false,
    status: error.response ? error.response.status : null,
    data: error.response ? error.response.data : null,
    error: String(error)
  }))
)
