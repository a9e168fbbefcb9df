Feature: A holder comes back: renewal, a lost token, a blocked PIN, "does my signature work?"
  After issuance the holder returns to the registration office with the eToken, the ID card, or both.
  The kiosk renews a certificate before it expires (shared seed 003), revokes the certificate of a lost
  token, unblocks a PIN with the token's SO PIN and checks that the signature works.

  Background:
    Given the kiosk runs on simulated devices against the central service
    And a blank eToken is in the token slot

  @renewal
  Scenario: Renewal on time, on the holder's own token, paid from the organisation's balance
    Given Эрдэнэ's ID card with register number "ШУ78787878" is in the reader
    And Эрдэнэ has an eToken issued with invoice "147314100021" that expires in 20 days
    When the holder asks to renew the certificate on the eToken
    Then the kiosk offers renewal with 20 days left and a fee of "44,000 ₮"
    When the holder confirms the details are unchanged and signs the application with the eToken PIN
    Then the new certificate is installed beside the old one
    And the organisation's balance went down by 44000
    And a renewal receipt was printed

  @renewal
  Scenario: Renewal is no longer possible fewer than 3 working days before expiry, a holiday in between
    Given Эрдэнэ's ID card with register number "ШУ78787878" is in the reader
    And Эрдэнэ has an eToken issued with invoice "147314100021" that expires in 20 days
    And the kiosk's date is the last day renewal would be on time without holidays
    And a public holiday falls between that day and the expiry
    When the holder asks to renew the certificate on the eToken
    Then the kiosk refuses renewal as too late, naming the last day
    And no renewal request reached the central

  @renewal
  Scenario: Renewal refused when the organisation's balance does not cover the fee
    Given Эрдэнэ's ID card with register number "ШУ78787878" is in the reader
    And Эрдэнэ has an eToken issued with invoice "147314100021" that expires in 20 days
    And the organisation "1234567" has a balance of 10000
    When the holder asks to renew the certificate on the eToken
    Then the kiosk refuses with "10,000 ₮"
    And no renewal request reached the central

  @renewal
  Scenario: The old certificate is removed only after it has expired
    Given Эрдэнэ's ID card with register number "ШУ78787878" is in the reader
    And Эрдэнэ has an eToken issued with invoice "147314100021" that expires in 20 days
    And the holder renewed the certificate on the eToken
    When the holder checks the eToken before the old certificate expires
    Then the eToken holds 2 key pairs
    When the holder checks the eToken the day after the old certificate expired
    Then the eToken holds 1 key pair
    And the signature works

  @revocation
  Scenario: The certificate of a lost eToken is revoked with the ID card alone
    Given Ариун's ID card with register number "НЭ80000000" is in the reader
    And Ариун has an eToken issued with invoice "147314016754"
    And the eToken is lost
    When the holder asks to revoke a certificate and proves who they are with the ID-card PIN "730419"
    And the holder picks the certificate and the reason "key_compromise" and the clerk confirms
    Then the central lists the certificate as revoked
    And a revocation receipt was printed

  @unblock
  Scenario: A blocked eToken PIN is unblocked at another kiosk with the SO PIN escrowed at the central
    Given Ариун's ID card with register number "НЭ80000000" is in the reader
    And Ариун has an eToken issued with invoice "147314016754"
    And the eToken's PIN is blocked
    And the holder goes to another kiosk of the office
    When the holder asks to unblock the eToken PIN and proves who they are with the ID-card PIN "730419"
    And the holder chooses the new eToken PIN "509173" twice
    Then the eToken PIN is unblocked with the SO PIN from the central
    And the eToken accepts the PIN "509173"

  @unblock
  Scenario: Unblock is refused when the ID card's holder is not the eToken's holder
    Given Ариун's ID card with register number "НЭ80000000" is in the reader
    And Ариун has an eToken issued with invoice "147314016754"
    And the eToken's PIN is blocked
    When Эрдэнэ's ID card is put in the reader instead
    And the holder asks to unblock the eToken PIN
    Then the kiosk refuses with "таарахгүй"
    And no PIN was asked of the card

  @check
  Scenario: Token check of a good certificate
    Given Ариун's ID card with register number "НЭ80000000" is in the reader
    And Ариун has an eToken issued with invoice "147314016754"
    When the holder checks the eToken with the PIN "482916"
    Then the signature works
    And the kiosk shows the certificate as "good"

  @check
  Scenario: Token check of a revoked certificate
    Given Ариун's ID card with register number "НЭ80000000" is in the reader
    And Ариун has an eToken issued with invoice "147314016754"
    And the certificate was revoked at the central
    When the holder checks the eToken with the PIN "482916"
    Then the signature works
    And the kiosk shows the certificate as "revoked"
