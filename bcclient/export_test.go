package bcclient

// Internals exported to the external tests (bcclient_test).
var (
	DecodeAPIError    = decodeAPIError
	QuoteODataString  = quoteODataString
	FilterQuery       = filterQuery
	PathLiteral       = pathLiteral
	MaxMessageLenTest = maxMessageLen
)
