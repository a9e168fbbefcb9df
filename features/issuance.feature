Feature: Issuing a qualified signature certificate at the registration office
  An applicant whose order is paid walks in with their national ID card. The kiosk finds the order,
  checks the ID card, the clerk checks the documents, the kiosk personalises the applicant's eToken
  and prints a receipt in the applicant's language.

  Background:
    Given the kiosk runs on simulated devices against the central service
    And a blank eToken is in the token slot

  @happy
  Scenario: A paid order becomes a personalised eToken and a printed receipt
    Given Ариун's ID card with register number "НЭ80000000" is in the reader
    When the applicant accepts the terms
    And the applicant enters invoice "147314016754"
    Then the kiosk shows the order as paid with total "88,000 ₮"
    When the applicant enters the ID-card PIN "730419"
    Then the identity is verified
    When the clerk ticks every document and approves
    And the applicant chooses the eToken PIN "482916" twice
    And the kiosk generates the key, has the certificate issued and installs it
    Then the issuance is done
    And the eToken holds a sensitive, never-extractable key and a certificate with the same ID
    And the certificate chains to the central CA and names the order's holder
    And a receipt in Mongolian was printed with the certificate serial and "88,000 ₮"
    And no PIN appears in the database, the logs or the receipt

  @happy
  Scenario Outline: The receipt is printed in the applicant's language
    Given Ариун's ID card with register number "НЭ80000000" is in the reader
    And the applicant chose the language "<language>"
    When the applicant goes through the whole issuance with invoice "147314016754"
    Then a receipt titled "<title>" was printed

    Examples:
      | language | title                                    |
      | kk       | ЭЦҚ ТІРКЕУ КУӘЛІГІН БЕРУ ТҮБІРТЕГІ       |
      | ky       | ЭКТ СЕРТИФИКАТЫН БЕРҮҮ ДҮМҮРЧӨГҮ         |
      | ru       | КВИТАНЦИЯ О ВЫДАЧЕ СЕРТИФИКАТА ЭЦП       |
      | en       | SIGNATURE CERTIFICATE ISSUANCE RECEIPT   |

  @refusal
  Scenario: An unpaid order is refused
    When the applicant accepts the terms
    And the applicant enters invoice "147314048627"
    Then the kiosk refuses with "нэхэмжлэхийн төлбөр төлөгдөөгүй байна"
    And the session is still at the order step

  @refusal
  Scenario: An order the holder has not confirmed by e-mail is refused
    When the applicant accepts the terms
    And the applicant enters the register number of the unconfirmed order
    Then the kiosk refuses with "эзэмшигч захиалгаа и-мэйлээр баталгаажуулаагүй байна"

  @refusal
  Scenario: The ID card's holder is not the order's holder
    Given Эрдэнэ's ID card with register number "ШУ78787878" is in the reader
    When the applicant accepts the terms
    And the applicant enters invoice "147314016754"
    And the kiosk reads the ID card
    Then the kiosk refuses with "Иргэний үнэмлэхний эзэмшигч захиалгын эзэмшигчтэй таарахгүй байна"
    And no PIN was asked of the card

  Scenario: A wrong ID-card PIN shows the tries left
    Given Ариун's ID card with register number "НЭ80000000" is in the reader
    When the applicant accepts the terms
    And the applicant enters invoice "147314016754"
    And the applicant enters the ID-card PIN "000000"
    Then the kiosk says "ПИН код буруу. Үлдсэн оролдлого: 2"
    When the applicant enters the ID-card PIN "730419"
    Then the identity is verified

  @fault
  Scenario: The eToken pulled before key generation is asked for again and nothing is lost (fault-injected)
    Given Ариун's ID card with register number "НЭ80000000" is in the reader
    And the applicant has been verified and approved with invoice "147314016754"
    And the applicant chose the eToken PIN "482916"
    When the eToken is pulled just before the key pair is generated
    And the kiosk generates the key
    Then the kiosk says "Э-Токен олдсонгүй. Дахин хийгээд үргэлжлүүлнэ үү."
    And the session is still at the keygen step
    When the eToken is inserted again
    And the kiosk generates the key, has the certificate issued and installs it
    Then the issuance is done
    And the eToken holds exactly one key pair

  @fault
  Scenario: The printer out of paper still completes the issuance and offers a reprint
    Given Ариун's ID card with register number "НЭ80000000" is in the reader
    And the printer is out of paper
    When the applicant goes through the whole issuance with invoice "147314016754"
    Then the issuance is done
    And the kiosk says "Хэвлэгчийн цаас дууссан. Баримтыг дараа дахин хэвлэнэ."
    And the receipt is kept for a reprint
    When paper is loaded and the clerk reprints the receipt
    Then a receipt in Mongolian was printed with the certificate serial and "88,000 ₮"
    And no receipt is waiting for a reprint

  @resume
  Scenario: A kiosk restarted mid-issuance resumes without generating a second key
    Given Ариун's ID card with register number "НЭ80000000" is in the reader
    And the applicant has been verified and approved with invoice "147314016754"
    And the applicant chose the eToken PIN "482916"
    When the kiosk loses power right after the key pair is generated on the eToken
    And the kiosk restarts
    Then the restarted kiosk resumes the session at the keygen step and asks for the eToken PIN
    When the applicant enters the eToken PIN "482916"
    And the kiosk generates the key, has the certificate issued and installs it
    Then the issuance is done
    And the eToken holds exactly one key pair

  @fault
  Scenario: The central service is down during enrollment and nothing is lost
    Given Ариун's ID card with register number "НЭ80000000" is in the reader
    And the applicant has been verified and approved with invoice "147314016754"
    And the applicant chose the eToken PIN "482916"
    When the kiosk generates the key
    And the central service goes down
    And the kiosk asks the central service to issue the certificate
    Then the kiosk says "Төв сервертэй холбогдож чадсангүй. Түр хүлээгээд дахин оролдоно уу."
    And the session is still at the enrollment step
    When the central service is back
    And the kiosk asks the central service to issue the certificate
    And the kiosk installs the certificate and prints the receipt
    Then the issuance is done
    And the eToken holds exactly one key pair

  @fault
  Scenario: The eToken pulled while the request is signed keeps its new key (fault-injected)
    Given Ариун's ID card with register number "НЭ80000000" is in the reader
    And the applicant has been verified and approved with invoice "147314016754"
    And the applicant chose the eToken PIN "482916"
    When the eToken is pulled just before the certificate request is signed
    And the kiosk generates the key
    Then the kiosk says "Э-Токен олдсонгүй. Дахин хийгээд үргэлжлүүлнэ үү."
    When the eToken is inserted again
    And the kiosk generates the key, has the certificate issued and installs it
    Then the issuance is done
    And the eToken holds exactly one key pair

  @fault
  Scenario: A blocked eToken PIN before issuance prepares the eToken again (fault-injected)
    Given Ариун's ID card with register number "НЭ80000000" is in the reader
    And the applicant has been verified and approved with invoice "147314016754"
    And the applicant chose the eToken PIN "482916"
    When the eToken reports its PIN blocked
    And the kiosk generates the key
    Then the kiosk says "Э-Токены ПИН түгжигдсэн тул Э-Токеныг дахин бэлтгэнэ."
    And the session is still at the token step
    When the eToken works again
    And the applicant chooses the eToken PIN "591730" twice
    And the kiosk generates the key, has the certificate issued and installs it
    Then the issuance is done
    And the eToken holds exactly one key pair

  @resume
  Scenario: After a restart, another person's card does not get the PIN
    Given Ариун's ID card with register number "НЭ80000000" is in the reader
    When the applicant accepts the terms
    And the applicant enters invoice "147314016754"
    And the kiosk reads the ID card
    And the kiosk restarts
    And Эрдэнэ's ID card is put in the reader instead
    And the applicant enters the ID-card PIN "730419"
    Then the kiosk refuses with "Өөр иргэний үнэмлэх хийгдсэн байна."
    And no PIN was asked of the card
    And the session is still at the identity step

  @resume
  Scenario: A wrong eToken PIN after a restart is not kept for retries
    Given Ариун's ID card with register number "НЭ80000000" is in the reader
    And the applicant has been verified and approved with invoice "147314016754"
    And the applicant chose the eToken PIN "482916"
    When the kiosk restarts
    And the applicant enters the eToken PIN "111999"
    And the kiosk generates the key
    Then the kiosk says "ПИН код буруу. Дахин оролдоно уу."
    And the kiosk asks for the eToken PIN again
    When the applicant enters the eToken PIN "482916"
    And the kiosk generates the key, has the certificate issued and installs it
    Then the issuance is done

  @refusal
  Scenario: An order cancelled at the central service before issuance ends the session
    Given Ариун's ID card with register number "НЭ80000000" is in the reader
    And the applicant has been verified and approved with invoice "147314016754"
    And the applicant chose the eToken PIN "482916"
    When the kiosk generates the key
    And the order is cancelled at the central service
    And the kiosk asks the central service to issue the certificate
    Then the kiosk refuses with "захиалга цуцлагдсан"
    And the session is still at the cancelled step
    And the clerk cannot cancel a session whose certificate was issued

  @resume @fault
  Scenario: A power cut inside key generation leaves half a key pair; the restarted kiosk ends with one (fault-injected)
    Given Ариун's ID card with register number "НЭ80000000" is in the reader
    And the applicant has been verified and approved with invoice "147314016754"
    And the applicant chose the eToken PIN "482916"
    When the kiosk loses power after the eToken stored the public key and before the private key
    And the kiosk restarts
    And the applicant enters the eToken PIN "482916"
    And the kiosk generates the key, has the certificate issued and installs it
    Then the issuance is done
    And the eToken holds exactly one key pair

  @resume @fault
  Scenario: A power cut inside the eToken's initialisation leaves it blank; the restarted kiosk initialises it again (fault-injected)
    Given Ариун's ID card with register number "НЭ80000000" is in the reader
    And the applicant has been verified and approved with invoice "147314016754"
    When the kiosk loses power inside the eToken's initialisation
    And the kiosk restarts
    And the applicant chooses the eToken PIN "482916" twice
    And the kiosk generates the key, has the certificate issued and installs it
    Then the issuance is done
    And the eToken holds a sensitive, never-extractable key and a certificate with the same ID

  @fault
  Scenario: With the central down, the visit ends with a pending receipt and the certificate is written at the next insertion
    Given Ариун's ID card with register number "НЭ80000000" is in the reader
    And the applicant has been verified and approved with invoice "147314016754"
    And the applicant chose the eToken PIN "482916"
    When the kiosk generates the key
    And the central service goes down
    And the kiosk asks the central service to issue the certificate
    And the clerk ends the visit with the certificate pending
    Then a receipt saying the certificate is pending was printed
    When the kiosk restarts
    And the central service is back
    And the applicant inserts the eToken again and enters the eToken PIN "482916"
    Then the issuance is done
    And the eToken holds a sensitive, never-extractable key and a certificate with the same ID

  @happy
  Scenario: The key is made on the eToken while the clerk checks the documents
    Given Ариун's ID card with register number "НЭ80000000" is in the reader
    When the applicant accepts the terms
    And the applicant enters invoice "147314016754"
    And the applicant enters the ID-card PIN "730419"
    And the kiosk prepares the eToken while the clerk checks the documents
    And the clerk ticks every document and approves
    And the applicant chooses the eToken PIN "482916" twice
    And the kiosk generates the key, has the certificate issued and installs it
    Then the issuance is done
    And the eToken holds exactly one key pair
    And the chosen PIN replaced the temporary one on the key made during the review

  @refusal
  Scenario: The clerk rejects after the key was made during the review, and the key is destroyed
    Given Ариун's ID card with register number "НЭ80000000" is in the reader
    When the applicant accepts the terms
    And the applicant enters invoice "147314016754"
    And the applicant enters the ID-card PIN "730419"
    And the kiosk prepares the eToken while the clerk checks the documents
    And the clerk rejects because the holder is not present
    Then the kiosk refuses with "гэрчилгээ эзэмшигч биечлэн ирэх шаардлагатай"
    And the session is still at the cancelled step
    And the eToken holds no key
