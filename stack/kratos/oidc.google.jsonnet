// Maps the ID token claims of the Google stand-in (provider `generic`, id `google`) to traits.
// The e-mail counts as verified only when the IdP says so (email_verified: true).
local claims = {
  email_verified: false,
} + std.extVar('claims');

{
  identity: {
    traits: {
      [if 'email' in claims then 'email' else null]: claims.email,
      [if 'given_name' in claims || 'family_name' in claims then 'name' else null]: {
        [if 'given_name' in claims then 'first' else null]: claims.given_name,
        [if 'family_name' in claims then 'last' else null]: claims.family_name,
      },
    },
    verified_addresses: std.prune([
      if 'email' in claims && claims.email_verified then { via: 'email', value: claims.email },
    ]),
  },
}
