Feature: Only a valid, unrevoked national ID card of a trusted authority confirms the applicant
  The kiosk asks the national ID authority whether the card is revoked (OCSP) before any PIN is typed,
  falls back to the authority's revocation list only when the responder cannot be reached, and tells
  the applicant in their language why a card is refused. What it checked is kept as evidence.
  (OCSP's own failures, the status unknown beyond the grace and openssl's view of the responder are
  tested on the same stack in tests/devices/test_card_revocation.py.)

  Background:
    Given the kiosk runs on simulated devices against the central service
    And a blank eToken is in the token slot

  @refusal
  Scenario: A revoked ID card is refused before its PIN is asked
    Given Ариун's ID card with register number "НЭ80000000" is in the reader
    And the national ID authority has revoked that card
    When the applicant accepts the terms
    And the applicant enters invoice "147314016754"
    And the kiosk reads the ID card
    Then the kiosk refuses with "Иргэний үнэмлэхний гэрчилгээг хүчингүй болгосон байна"
    And no PIN was asked of the card
    And the refusal "error.card_revoked" is journaled for the central

  @refusal
  Scenario: An expired ID card is refused with its own reason
    Given Ариун's expired ID card is in the reader
    When the applicant accepts the terms
    And the applicant enters invoice "147314016754"
    And the kiosk reads the ID card
    Then the kiosk refuses with "Иргэний үнэмлэхний хүчинтэй хугацаа дууссан байна"
    And no PIN was asked of the card

  @refusal
  Scenario: An ID card of an authority the kiosk does not trust is refused
    Given Ариун's ID card issued by a foreign authority is in the reader
    When the applicant accepts the terms
    And the applicant enters invoice "147314016754"
    And the kiosk reads the ID card
    Then the kiosk refuses with "киоскийн итгэмжилдэг улсын байгууллага олгоогүй"
    And no PIN was asked of the card

  @fault
  Scenario: Offline within the grace, the card is accepted, the clerk is told, and the evidence is kept
    Given Ариун's ID card with register number "НЭ80000000" is in the reader
    And the authority's OCSP responder is down and its revocation list is 1 days past its next update
    When the applicant accepts the terms
    And the applicant enters invoice "147314016754"
    And the applicant enters the ID-card PIN "730419"
    Then the identity is verified
    And the clerk sees that the offline grace was used
    And the evidence holds the card's certificate, the nonce, its signature and the revocation list that decided
    And the evidence is queued for the central without the PIN

  Scenario: A kiosk that reads ID cards through OpenSC verifies the applicant by the same checks
    Given the kiosk reads ID cards through OpenSC
    And Ариун's ID card with register number "НЭ80000000" is in the reader
    When the applicant accepts the terms
    And the applicant enters invoice "147314016754"
    And the applicant enters the ID-card PIN "730419"
    Then the identity is verified
    And the evidence says OpenSC read the card and holds the authority's OCSP answer

  Scenario: Through OpenSC, the tries left are said where OpenSC knows them and the final try is never spent
    Given the kiosk reads ID cards through OpenSC
    And Ариун's ID card with register number "НЭ80000000" is in the reader
    When the applicant accepts the terms
    And the applicant enters invoice "147314016754"
    And the applicant enters the ID-card PIN "000000"
    Then the kiosk says "ПИН код буруу. Дахин оролдоно уу."
    When the applicant enters the ID-card PIN "000001"
    Then the kiosk says "ПИН код буруу. Үлдсэн оролдлого: 1"
    When the applicant enters the ID-card PIN "730419"
    Then the kiosk says "Иргэний үнэмлэхний ПИН код оруулах ганц оролдлого үлдсэн байна. Үнэмлэх түгжигдэхээс сэргийлж киоск үүнийг ашиглахгүй: иргэний үнэмлэх олгосон байгууллагад хандана уу."
    And the ID card still has its final PIN try
