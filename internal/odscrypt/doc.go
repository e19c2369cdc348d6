// Package odscrypt implements the encrypted connection-string format that the
// Ed-Fi ODS/API reads from EdFi_Admin's dbo.odsinstances.connectionstring when
// it is configured with an OdsConnectionStringEncryptionKey.
//
// The stored value is
//
//	base64(IV) + "." + base64(ciphertext) + "." + base64(HMAC)
//
// where the ciphertext is AES-256-CBC with PKCS#7 padding of the UTF-8
// connection string under the 32-byte key and a random 16-byte IV, and the
// HMAC is HMAC-SHA256 of the ciphertext bytes under the same key. Base64 is
// standard with padding, as .NET's Convert.ToBase64String writes it.
//
// Decryption verifies the HMAC in constant time before it decrypts anything,
// and checks the padding strictly. Note that the format (as the ODS/API
// defines it) authenticates the ciphertext only, not the IV: a modified IV is
// caught only if it breaks the padding or the UTF-8 of the first block.
//
// This package must never log, and never put into an error message, a key
// (raw or base64) or a plaintext connection string. Key's String and GoString
// methods are redacted so that a stray %v or %#v cannot leak it; errors name
// only what was wrong (a length, a part number), never the value.
package odscrypt
