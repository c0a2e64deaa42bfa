package jsstore

// AckMeta is ackMeta, for the tests outside the package.
var AckMeta = ackMeta
