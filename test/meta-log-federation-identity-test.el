;;; meta-log-federation-identity-test.el --- Identities and signed events from Elisp  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;;; Commentary:

;; ert tests of the identity API: recovery phrases, identities, identity
;; files and signed events, plus a cross-check of our events by an
;; independent verifier (test/crosscheck/verify.mjs, pure-JS BIP-340).
;; Names read `area::case'.

;;; Code:

(require 'meta-log-federation-test-helpers)
(require 'meta-log-federation-identity)
(require 'cl-lib)
(require 'json)
(require 'subr-x)

(defconst meta-log-federation-test-nip06-phrase
  "leader monkey parrot ring guide accident before fence cannon height naive bean"
  "First NIP-06 test vector: its recovery phrase.")

(defconst meta-log-federation-test-nip06-peer-id
  "17162c921dc4d2518f9a101db33695df1afb56ab82f5ff3e5da6eec3ca5cd917"
  "First NIP-06 test vector: its public key.")

(defconst meta-log-federation-test-crosscheck-directory
  (expand-file-name "crosscheck/" (file-name-directory
                                   (or load-file-name buffer-file-name)))
  "Directory of the independent verifier.")

(defvar meta-log-federation-test--id nil
  "The NIP-06 identity, derived once.")

(defun meta-log-federation-test-id ()
  "Return the identity of the first NIP-06 vector (derived once)."
  (or meta-log-federation-test--id
      (setq meta-log-federation-test--id
            (meta-log-federation-identity-from-mnemonic
             meta-log-federation-test-nip06-phrase))))

(defun meta-log-federation-test-identity-file (name)
  "Return a fresh file NAME in a new directory of the scratch directory."
  (expand-file-name name (make-temp-file
                          (expand-file-name "id-" meta-log-federation-test-directory)
                          t)))

(defun meta-log-federation-test-write-string (file string)
  "Replace the contents of FILE with the bytes of STRING."
  (let ((coding-system-for-write 'no-conversion))
    (write-region string nil file nil 'silent)))

(defun meta-log-federation-test-json-set (json field value)
  "Return the event JSON with FIELD (a symbol) replaced by VALUE."
  (let ((obj (json-parse-string json :object-type 'alist :array-type 'list)))
    (setf (alist-get field obj) value)
    (json-serialize
     (mapcar (lambda (cell)
               (if (eq (car cell) 'tags)
                   (cons 'tags (vconcat (mapcar #'vconcat (cdr cell))))
                 cell))
             obj))))

;;;; Recovery phrases and identities

(ert-deftest identity::nip06-vector-through-elisp ()
  (let ((id (meta-log-federation-test-id)))
    (should (meta-log-federation-identity-p id))
    (should (equal (meta-log-federation-identity-peer-id id)
                   meta-log-federation-test-nip06-peer-id))
    (let ((pk (meta-log-federation-identity-public-key id)))
      (should (= 66 (length pk)))
      (should (string-suffix-p meta-log-federation-test-nip06-peer-id pk))
      (should (member (substring pk 0 2) '("02" "03"))))
    (should (equal (meta-log-federation-identity-path id) "m/44'/1237'/0'/0/0"))
    (should (equal meta-log-federation-derivation-path "m/44'/1237'/0'/0/0")))
  ;; The second NIP-06 vector (24 words).
  (should (equal (meta-log-federation-identity-peer-id
                  (meta-log-federation-identity-from-mnemonic
                   "what bleak badge arrange retreat wolf trade produce cricket blur garlic valid proud rude strong choose busy staff weather area salt hollow arm fade"))
                 "d41b22899549e1f3d335a31002cfd382174006e166d3e658e3a5eecdb6463573"))
  ;; Case and extra spaces do not matter.
  (should (equal (meta-log-federation-identity-peer-id
                  (meta-log-federation-identity-from-mnemonic
                   (concat "  " (upcase meta-log-federation-test-nip06-phrase) " ")))
                 meta-log-federation-test-nip06-peer-id)))

(ert-deftest identity::passphrase-and-path-change-the-key ()
  (let* ((base (meta-log-federation-identity-peer-id (meta-log-federation-test-id)))
         (with-pass (meta-log-federation-identity-peer-id
                     (meta-log-federation-identity-from-mnemonic
                      meta-log-federation-test-nip06-phrase "x")))
         (account-1 (meta-log-federation-identity-from-mnemonic
                     meta-log-federation-test-nip06-phrase nil "m/44'/1237'/1'/0/0"))
         (by-custom (let ((meta-log-federation-derivation-path "m/44h/1237h/1h/0/0"))
                      (meta-log-federation-identity-from-mnemonic
                       meta-log-federation-test-nip06-phrase))))
    (should-not (equal base with-pass))
    (should-not (equal base (meta-log-federation-identity-peer-id account-1)))
    (should (equal (meta-log-federation-identity-peer-id account-1)
                   (meta-log-federation-identity-peer-id by-custom)))
    (should (equal (meta-log-federation-identity-path by-custom) "m/44'/1237'/1'/0/0"))))

(ert-deftest identity::generated-mnemonics-are-valid ()
  (let ((m12 (meta-log-federation-mnemonic-generate))
        (m24 (meta-log-federation-mnemonic-generate 24)))
    (should (= 12 (length (split-string m12 " "))))
    (should (= 24 (length (split-string m24 " "))))
    (should (meta-log-federation-mnemonic-valid-p m12))
    (should (meta-log-federation-mnemonic-valid-p m24))
    (should-not (equal (meta-log-federation-mnemonic-generate 12)
                       (meta-log-federation-mnemonic-generate 12)))
    (should (meta-log-federation-identity-p
             (meta-log-federation-identity-from-mnemonic m24))))
  (dolist (n (list 13 0 11 15 18 -1 25 most-positive-fixnum most-negative-fixnum))
    (let ((err (should-error (meta-log-federation-mnemonic-generate n)
                             :type 'meta-log-federation-identity-error)))
      (should (string-match-p "use 12 or 24" (cadr err)))))
  (should-error (meta-log-federation-mnemonic-generate "12")))

(ert-deftest identity::mnemonic-valid-p-refuses-garbage ()
  (should (eq t (meta-log-federation-mnemonic-valid-p meta-log-federation-test-nip06-phrase)))
  (dolist (bad (list ""
                     " "
                     "garbage"
                     "not a recovery phrase at all, just some words in a row"
                     ;; A valid word list whose checksum is wrong (last word changed).
                     "leader monkey parrot ring guide accident before fence cannon height naive bear"
                     ;; Eleven words.
                     "leader monkey parrot ring guide accident before fence cannon height naive"
                     "é ü ✓ 😀 日本 \u2028 \0"
                     (make-string 100000 ?a)
                     (string-to-multibyte "\377\376 abandon")
                     "\377\376"))
    (should-not (meta-log-federation-mnemonic-valid-p bad)))
  (should-error (meta-log-federation-mnemonic-valid-p nil) :type 'wrong-type-argument)
  (should-error (meta-log-federation-mnemonic-valid-p 42) :type 'wrong-type-argument))

(ert-deftest identity::bad-mnemonic-and-bad-path-signal ()
  (dolist (bad '("" "leader monkey" "leader monkey parrot ring guide accident before fence cannon height naive bear"))
    (let ((err (should-error (meta-log-federation-identity-from-mnemonic bad)
                             :type 'meta-log-federation-bad-mnemonic)))
      (should (string-match-p "recovery phrase" (cadr err)))))
  (dolist (path '("" "m" "44'/0" "m/x" "m/44'/1237'/0'/0/0/" "m//1" "m/2147483648'"))
    (let ((err (should-error (meta-log-federation-identity-from-mnemonic
                              meta-log-federation-test-nip06-phrase nil path)
                             :type 'meta-log-federation-bad-derivation-path)))
      (should (string-match-p (regexp-quote "m/44'/1237'/0'/0/0") (cadr err)))))
  ;; Both are identity errors, and package errors.
  (should-error (meta-log-federation-identity-from-mnemonic "x")
                :type 'meta-log-federation-identity-error)
  (should-error (meta-log-federation-identity-from-mnemonic
                 meta-log-federation-test-nip06-phrase nil "bogus")
                :type 'meta-log-federation-error)
  (should-error (meta-log-federation-identity-from-mnemonic 42) :type 'wrong-type-argument))

(ert-deftest identity::error-hierarchy ()
  (dolist (sym '(meta-log-federation-bad-mnemonic
                 meta-log-federation-bad-derivation-path
                 meta-log-federation-bad-passphrase
                 meta-log-federation-identity-exists
                 meta-log-federation-corrupt-identity-file))
    (let ((conditions (get sym 'error-conditions)))
      (should (memq 'meta-log-federation-identity-error conditions))
      (should (memq 'meta-log-federation-error conditions))
      (should (memq 'error conditions))
      (should (stringp (get sym 'error-message))))))

(ert-deftest identity::user-ptr-type-check ()
  (let ((id (meta-log-federation-test-id)))
    (should (eq t (meta-log-federation-identity-p id)))
    (dolist (other (list nil 42 "17162c92" (list id) (vector id) 'identity))
      (should-not (meta-log-federation-identity-p other))
      (let ((err (should-error (meta-log-federation-identity-peer-id other)
                               :type 'wrong-type-argument)))
        (should (eq (cadr err) 'meta-log-federation-identity-p)))
      (should-error (meta-log-federation-identity-public-key other) :type 'wrong-type-argument)
      (should-error (meta-log-federation-identity-path other) :type 'wrong-type-argument)
      (should-error (meta-log-federation-sign-event other 1 "x") :type 'wrong-type-argument)
      (should-error (meta-log-federation-identity-save
                     other (meta-log-federation-test-identity-file "x.org"))
                    :type 'wrong-type-argument))))

;;;; Identity files

(ert-deftest identity::file-round-trip-unencrypted ()
  (let* ((file (meta-log-federation-test-identity-file "peer.org"))
         (id (meta-log-federation-identity-create file)))
    (should (meta-log-federation-identity-p id))
    (should (= (file-modes file) #o600))
    (let ((text (decode-coding-string (meta-log-federation-test-file-string file) 'utf-8)))
      (should (string-match-p "UNENCRYPTED" text))
      (should (string-match-p (regexp-quote (meta-log-federation-identity-peer-id id)) text))
      (should (string-match-p ":ENCRYPTION: none" text))
      (string-match ":MNEMONIC: \\(.*\\)$" text)
      (let ((phrase (match-string 1 text)))
        (should (= 12 (length (split-string phrase " "))))
        (should (meta-log-federation-mnemonic-valid-p phrase))
        (should (equal (meta-log-federation-identity-peer-id
                        (meta-log-federation-identity-from-mnemonic phrase))
                       (meta-log-federation-identity-peer-id id)))))
    (let ((loaded (meta-log-federation-identity-load file)))
      (should (equal (meta-log-federation-identity-peer-id loaded)
                     (meta-log-federation-identity-peer-id id)))
      (should (equal (meta-log-federation-identity-public-key loaded)
                     (meta-log-federation-identity-public-key id)))
      (should (equal (meta-log-federation-identity-path loaded)
                     (meta-log-federation-identity-path id))))
    ;; A passphrase given for a plain file is ignored.
    (should (meta-log-federation-identity-p (meta-log-federation-identity-load file "x")))
    ;; `meta-log-federation-mnemonic-words' sets the length of new phrases.
    (let* ((meta-log-federation-mnemonic-words 24)
           (file24 (meta-log-federation-test-identity-file "peer24.org")))
      (meta-log-federation-identity-create file24)
      (should (string-match ":MNEMONIC: \\(.*\\)$" (meta-log-federation-test-file-string file24)))
      (should (= 24 (length (split-string (match-string 1 (meta-log-federation-test-file-string file24)) " ")))))
    ;; FILE goes through `expand-file-name'.
    (let ((default-directory (file-name-directory file)))
      (should (meta-log-federation-identity-p
               (meta-log-federation-identity-load "peer.org"))))))

(ert-deftest identity::file-round-trip-encrypted ()
  (let* ((file (meta-log-federation-test-identity-file "sub/dir/peer.org"))
         (id (meta-log-federation-identity-create file "correct horse ✓")))
    (should (= (file-modes file) #o600))
    (let ((text (decode-coding-string (meta-log-federation-test-file-string file) 'utf-8)))
      (should-not (string-match-p "UNENCRYPTED" text))
      (should-not (string-match-p ":MNEMONIC:" text))
      (should (string-match-p ":ENCRYPTION: argon2id-xchacha20poly1305" text)))
    (should (equal (meta-log-federation-identity-peer-id
                    (meta-log-federation-identity-load file "correct horse ✓"))
                   (meta-log-federation-identity-peer-id id)))
    (let ((err (should-error (meta-log-federation-identity-load file "wrong")
                             :type 'meta-log-federation-bad-passphrase)))
      (should (string-match-p "passphrase" (cadr err))))
    (let ((err (should-error (meta-log-federation-identity-load file)
                             :type 'meta-log-federation-bad-passphrase)))
      (should (string-match-p "encrypted" (cadr err))))
    ;; An empty passphrase protects nothing and is refused.
    (should-error (meta-log-federation-identity-create
                   (meta-log-federation-test-identity-file "e.org") "")
                  :type 'meta-log-federation-bad-passphrase)))

(ert-deftest identity::second-create-refuses-and-keeps-the-file ()
  (let* ((file (meta-log-federation-test-identity-file "peer.org"))
         (id (meta-log-federation-identity-create file))
         (before (meta-log-federation-test-file-string file))
         (mtime (file-attribute-modification-time (file-attributes file))))
    (let ((err (should-error (meta-log-federation-identity-create file)
                             :type 'meta-log-federation-identity-exists)))
      (should (string-match-p (regexp-quote file) (cadr err))))
    (should-error (meta-log-federation-identity-create file "pass")
                  :type 'meta-log-federation-identity-exists)
    (should (equal (meta-log-federation-test-file-string file) before))
    (should (equal (file-attribute-modification-time (file-attributes file)) mtime))
    (should (equal (meta-log-federation-identity-peer-id
                    (meta-log-federation-identity-load file))
                   (meta-log-federation-identity-peer-id id)))))

(ert-deftest identity::save-refuses-to-overwrite-unless-asked ()
  (let* ((file (meta-log-federation-test-identity-file "peer.org"))
         (first (meta-log-federation-identity-create file))
         (nip06 (meta-log-federation-test-id))
         (before (meta-log-federation-test-file-string file)))
    (should-error (meta-log-federation-identity-save nip06 file)
                  :type 'meta-log-federation-identity-exists)
    (should (equal (meta-log-federation-test-file-string file) before))
    (should (equal (meta-log-federation-identity-peer-id (meta-log-federation-identity-load file))
                   (meta-log-federation-identity-peer-id first)))
    (should (equal (meta-log-federation-identity-save nip06 file "pw" t) file))
    (should (= (file-modes file) #o600))
    (should (equal (meta-log-federation-identity-peer-id
                    (meta-log-federation-identity-load file "pw"))
                   meta-log-federation-test-nip06-peer-id))
    ;; Back to a plain file, again only with OVERWRITE.
    (meta-log-federation-identity-save nip06 file nil t)
    (should (equal (meta-log-federation-identity-peer-id (meta-log-federation-identity-load file))
                   meta-log-federation-test-nip06-peer-id))
    ;; A new file needs no OVERWRITE; the BIP-39 passphrase and path survive.
    (let ((other (meta-log-federation-identity-from-mnemonic
                  meta-log-federation-test-nip06-phrase "bip39 pass" "m/44'/1237'/3'/0/0"))
          (file2 (meta-log-federation-test-identity-file "other.org")))
      (meta-log-federation-identity-save other file2)
      (let ((loaded (meta-log-federation-identity-load file2)))
        (should (equal (meta-log-federation-identity-peer-id loaded)
                       (meta-log-federation-identity-peer-id other)))
        (should (equal (meta-log-federation-identity-path loaded) "m/44'/1237'/3'/0/0"))))))

(ert-deftest identity::damaged-files-signal-clearly ()
  (let* ((plain (meta-log-federation-test-identity-file "plain.org"))
         (secret (meta-log-federation-test-identity-file "secret.org")))
    (meta-log-federation-identity-save (meta-log-federation-test-id) plain)
    (meta-log-federation-identity-save (meta-log-federation-test-id) secret "pw")
    ;; Truncated files.
    (dolist (file (list plain secret))
      (let ((text (meta-log-federation-test-file-string file))
            (copy (concat file ".truncated")))
        (meta-log-federation-test-write-string copy (substring text 0 (/ (length text) 2)))
        (let ((err (should-error (meta-log-federation-identity-load copy "pw")
                                 :type 'meta-log-federation-corrupt-identity-file)))
          (should (string-match-p "damaged" (cadr err))))))
    ;; Corrupted ciphertext: one Base64 character changed, still valid Base64.
    (let* ((text (meta-log-federation-test-file-string secret))
           (pos (progn (string-match "#\\+BEGIN_EXAMPLE\n" text) (+ 5 (match-end 0))))
           (copy (concat secret ".corrupt")))
      (aset text pos (if (eq (aref text pos) ?A) ?B ?A))
      (meta-log-federation-test-write-string copy text)
      (let ((err (should-error (meta-log-federation-identity-load copy "pw")
                               :type 'meta-log-federation-corrupt-identity-file)))
        (should (string-match-p "damaged" (cadr err))))
      ;; The right passphrase is still told apart from a wrong one.
      (should-error (meta-log-federation-identity-load copy "wrong")
                    :type 'meta-log-federation-bad-passphrase))
    ;; An edited peer id.
    (let* ((text (meta-log-federation-test-file-string plain))
           (copy (concat plain ".edited")))
      (meta-log-federation-test-write-string
       copy (replace-regexp-in-string ":PEER_ID: 1" ":PEER_ID: 2" text t t))
      (should-error (meta-log-federation-identity-load copy)
                    :type 'meta-log-federation-corrupt-identity-file))
    ;; Not an identity file at all, and an empty one.
    (dolist (junk (list "just some text\n" "" (apply #'unibyte-string (number-sequence 0 255))))
      (let ((copy (concat plain ".junk")))
        (meta-log-federation-test-write-string copy junk)
        (should-error (meta-log-federation-identity-load copy)
                      :type 'meta-log-federation-corrupt-identity-file)))
    ;; A missing file names itself.
    (let* ((missing (concat plain ".missing"))
           (err (should-error (meta-log-federation-identity-load missing)
                              :type 'meta-log-federation-identity-error)))
      (should (string-match-p (regexp-quote missing) (cadr err))))))

(ert-deftest identity::commands-work-in-batch ()
  (let* ((file (meta-log-federation-test-identity-file "new.org"))
         (id (meta-log-federation-identity-new file)))
    (should (meta-log-federation-identity-p id))
    (should (equal (meta-log-federation-identity-peer-id (meta-log-federation-identity-show file))
                   (meta-log-federation-identity-peer-id id)))
    (let ((meta-log-federation-identity-file file))
      (should (meta-log-federation-identity-p (meta-log-federation-identity-show))))
    (should-error (meta-log-federation-identity-new file)
                  :type 'meta-log-federation-identity-exists))
  (let ((file (meta-log-federation-test-identity-file "enc.org")))
    (meta-log-federation-identity-new file "pw")
    (should (meta-log-federation-identity-p (meta-log-federation-identity-show file "pw")))
    ;; Not interactive: no prompt, the error comes through.
    (should-error (meta-log-federation-identity-show file)
                  :type 'meta-log-federation-bad-passphrase))
  (should (custom-variable-p 'meta-log-federation-identity-file))
  (should (string-suffix-p "meta-log/peer-identity.org"
                           (eval (car (get 'meta-log-federation-identity-file 'standard-value))))))

;;;; Events

(ert-deftest identity::sign-verify-round-trip ()
  (let* ((id (meta-log-federation-test-id))
         (before (truncate (float-time)))
         (json (meta-log-federation-sign-event id 30078 "héllo ✓ 😀 \"q\" \\ \n"
                                               '(("t" "meta-log") ("d" "canvas" ""))))
         (plist (meta-log-federation-verify-event json)))
    (should (stringp json))
    (should plist)
    (should (null (meta-log-federation-verify-event-reason)))
    (should (equal (plist-get plist :pubkey) meta-log-federation-test-nip06-peer-id))
    (should (equal (plist-get plist :kind) 30078))
    (should (equal (plist-get plist :content) "héllo ✓ 😀 \"q\" \\ \n"))
    (should (equal (plist-get plist :tags) '(("t" "meta-log") ("d" "canvas" ""))))
    (should (<= before (plist-get plist :created-at) (+ 2 (float-time))))
    (should (= 64 (length (plist-get plist :id))))
    (should (= 128 (length (plist-get plist :sig))))
    (should (equal (let (keys) (cl-loop for (k _v) on plist by #'cddr do (push k keys))
                        (nreverse keys))
                   '(:id :pubkey :created-at :kind :tags :content :sig)))
    ;; The JSON is the NIP-01 wire form.
    (let ((obj (json-parse-string json :object-type 'alist)))
      (should (equal (mapcar #'car obj) '(id pubkey created_at kind tags content sig)))
      (should (equal (alist-get 'id obj) (plist-get plist :id)))))
  ;; No tags, empty content, kind 0 and 65535.
  (dolist (kind '(0 65535))
    (let ((plist (meta-log-federation-verify-event
                  (meta-log-federation-sign-event (meta-log-federation-test-id) kind ""))))
      (should (equal (plist-get plist :tags) nil))
      (should (equal (plist-get plist :content) ""))
      (should (equal (plist-get plist :kind) kind))))
  ;; Two signatures of the same event differ (fresh auxiliary randomness).
  (should-not (equal (meta-log-federation-sign-event (meta-log-federation-test-id) 1 "same")
                     (meta-log-federation-sign-event (meta-log-federation-test-id) 1 "same"))))

(ert-deftest identity::sign-event-checks-its-arguments ()
  (let ((id (meta-log-federation-test-id)))
    (should-error (meta-log-federation-sign-event id -1 "x") :type 'args-out-of-range)
    (should-error (meta-log-federation-sign-event id 65536 "x") :type 'args-out-of-range)
    (should-error (meta-log-federation-sign-event id "1" "x") :type 'wrong-type-argument)
    (should-error (meta-log-federation-sign-event id 1.0 "x") :type 'wrong-type-argument)
    (should-error (meta-log-federation-sign-event id 1 nil) :type 'wrong-type-argument)
    (should-error (meta-log-federation-sign-event id 1 'x) :type 'wrong-type-argument)
    (should-error (meta-log-federation-sign-event id 1 (string-to-multibyte "raw \377"))
                  :type 'meta-log-federation-error)
    (should-error (meta-log-federation-sign-event id 1 "x" "tags") :type 'wrong-type-argument)
    (should-error (meta-log-federation-sign-event id 1 "x" '("t")) :type 'wrong-type-argument)
    (should-error (meta-log-federation-sign-event id 1 "x" '(("t" 1))) :type 'wrong-type-argument)
    (should-error (meta-log-federation-sign-event id 1 "x" '(("t" . "x"))) :type 'wrong-type-argument)
    (let ((circular (list "a" "b")))
      (setcdr (cdr circular) circular)
      (should-error (meta-log-federation-sign-event id 1 "x" (list circular))
                    :type 'wrong-type-argument))))

(ert-deftest identity::tampered-events-are-refused-with-the-reason ()
  (let* ((json (meta-log-federation-sign-event (meta-log-federation-test-id) 1 "original"
                                               '(("t" "x"))))
         (obj (json-parse-string json :object-type 'alist))
         (sig (alist-get 'sig obj))
         (id (alist-get 'id obj))
         (flip (lambda (hex) (concat (if (eq (aref hex 0) ?0) "1" "0") (substring hex 1)))))
    (should (meta-log-federation-verify-event json))
    (dolist (case `((content "altered" id-mismatch)
                    (kind 2 id-mismatch)
                    (tags (("t" "y")) id-mismatch)
                    (created_at 1 id-mismatch)
                    (id ,(funcall flip id) id-mismatch)
                    (sig ,(funcall flip sig) bad-signature)
                    (sig ,(upcase sig) bad-hex)
                    (pubkey "d41b22899549e1f3d335a31002cfd382174006e166d3e658e3a5eecdb6463573"
                            id-mismatch)))
      (let ((tampered (meta-log-federation-test-json-set json (nth 0 case) (nth 1 case))))
        (should-not (meta-log-federation-verify-event tampered))
        (let ((reason (meta-log-federation-verify-event-reason)))
          (should (eq (car reason) (nth 2 case)))
          (should (stringp (cdr reason)))
          (should (> (length (cdr reason)) 10)))))
    ;; A signature of another event, with the id matching: bad signature.
    (let* ((other (json-parse-string
                   (meta-log-federation-sign-event (meta-log-federation-test-id) 1 "other")
                   :object-type 'alist)))
      (should-not (meta-log-federation-verify-event
                   (meta-log-federation-test-json-set json 'sig (alist-get 'sig other))))
      (should (eq (car (meta-log-federation-verify-event-reason)) 'bad-signature)))
    ;; A success clears the reason.
    (should (meta-log-federation-verify-event json))
    (should-not (meta-log-federation-verify-event-reason))))

(ert-deftest identity::verify-event-never-signals ()
  (let ((inputs (list ""
                      "not json"
                      "[]"
                      "{}"
                      "null"
                      "{\"id\":1}"
                      "\"a string\""
                      (make-string 300000 ?x)
                      (concat "{\"content\":\"" (make-string 300000 ?a) "\"}")
                      (apply #'string (mapcar (lambda (i) (+ 160 (* i 997))) (number-sequence 0 300)))
                      "é ü ✓ 😀 日本 \u2028 \0 \x7f"
                      (string-to-multibyte "\377\376{}")
                      "\377\376\375"
                      (apply #'unibyte-string (number-sequence 0 255))
                      nil
                      42
                      'sym
                      [1 2]
                      (list "x")
                      (make-hash-table))))
    (dolist (input inputs)
      (should-not (condition-case err
                      (meta-log-federation-verify-event input)
                    (error (list 'signalled err))))
      (let ((reason (meta-log-federation-verify-event-reason)))
        (should (symbolp (car reason)))
        (should (car reason))
        (should (stringp (cdr reason)))))
    (meta-log-federation-verify-event (make-string 300000 ?x))
    (should (eq (car (meta-log-federation-verify-event-reason)) 'too-large))
    (meta-log-federation-verify-event "not json")
    (should (eq (car (meta-log-federation-verify-event-reason)) 'malformed-json))
    (meta-log-federation-verify-event "{}")
    (should (eq (car (meta-log-federation-verify-event-reason)) 'bad-field))
    (meta-log-federation-verify-event 42)
    (should (eq (car (meta-log-federation-verify-event-reason)) 'not-a-string))))

(ert-deftest identity::verify-events-keeps-order-and-checks-each ()
  (let* ((id (meta-log-federation-test-id))
         (good (mapcar (lambda (i) (meta-log-federation-sign-event id 1 (format "event %d" i)))
                       (number-sequence 0 9)))
         (other (meta-log-federation-sign-event
                 (meta-log-federation-identity-from-mnemonic
                  meta-log-federation-test-nip06-phrase "other")
                 1 "from another peer"))
         (bad (meta-log-federation-test-json-set (nth 3 good) 'content "forged"))
         (input (append (list (nth 0 good) "not json" nil 42 bad other)
                        (nthcdr 1 good)
                        (list "" (make-string 300000 ?a) (string-to-multibyte "\377"))))
         (out (meta-log-federation-verify-events input)))
    (should (= (length out) (length input)))
    (cl-loop for in in input
             for res in out
             do (if (and (stringp in) (not (eq in bad)) (string-prefix-p "{" in))
                    (should (equal (plist-get res :id)
                                   (alist-get 'id (json-parse-string in :object-type 'alist))))
                  (should-not res)))
    (should (equal (plist-get (nth 5 out) :content) "from another peer"))
    ;; The batch gives the same plists as single calls.
    (should (equal (meta-log-federation-verify-events good)
                   (mapcar #'meta-log-federation-verify-event good))))
  (should (equal (meta-log-federation-verify-events nil) nil))
  (should-error (meta-log-federation-verify-events "x") :type 'wrong-type-argument)
  (should-error (meta-log-federation-verify-events '("a" . "b")) :type 'wrong-type-argument)
  (let ((circular (list "a")))
    (setcdr circular circular)
    (should-error (meta-log-federation-verify-events circular) :type 'wrong-type-argument)))

;;;; Cross-check with an independent implementation

(defun meta-log-federation-test-crosscheck-events ()
  "Return about 20 varied events signed by two identities, as JSON strings."
  (let ((a (meta-log-federation-test-id))
        (b (meta-log-federation-identity-from-mnemonic
            (meta-log-federation-mnemonic-generate 24))))
    (cl-loop
     for (kind content tags) in
     `((1 "plain text" nil)
       (1 "" nil)
       (0 "ünïcødé ✓ — Ω ß 日本語 한국어 العربية" (("t" "unicode")))
       (1 "emoji 😀🎉👩‍👩‍👧‍👦 🇫🇷 and a skin tone 👍🏽" nil)
       (1 "\"double\" and 'single' quotes, \\backslashes\\ and \\\"both\\\"" nil)
       (1 "line one\nline two\r\nline three\ttabbed" nil)
       (1 ,(concat "controls:" (apply #'string (number-sequence 0 31)) "\x7f") nil)
       (1 "\b\f backspace and form feed" nil)
       (1 "separators \u2028 and \u2029, BOM \ufeff, NBSP \u00a0" nil)
       (1 "slash / and <script></script> & html" nil)
       (1 "tags with empty strings" (("" "") ("e" "") ("p" "" "")))
       (1 "an empty tag" (()))
       (1 "empty tags list" nil)
       (65535 "largest kind" (("k")))
       (30078 "replaceable, with d tag" (("d" "canvas/1") ("t" "meta-log")))
       (1 ,(make-string 5000 ?z) (("long")))
       (1 "non-BMP 𝄞 𐍈 🀄" (("t" "𝄞") ("x" "\n\"\\")))
       (1 "NUL\0inside" (("nul" "\0")))
       (7 "tag values with unicode" (("t" "ünï" "✓" "😀")))
       (1 "a last one" (("a" "b" "c" "d" "e" "f"))))
     for i from 0
     collect (meta-log-federation-sign-event (if (cl-evenp i) a b) kind content tags))))

(defun meta-log-federation-test-run-crosscheck (events)
  "Run the independent verifier on EVENTS; return its output lines."
  (let ((node (or (executable-find "node")
                  (ert-fail "node is not installed: the cross-check needs Node.js >= 20.19")))
        (dir meta-log-federation-test-crosscheck-directory))
    (unless (file-directory-p (expand-file-name "node_modules/@noble/curves" dir))
      (ert-fail "test/crosscheck/node_modules is missing: run `npm ci --prefix test/crosscheck' first"))
    (with-temp-buffer
      (let ((stderr (make-temp-file "crosscheck-stderr"))
            (coding-system-for-write 'utf-8-unix)
            (coding-system-for-read 'utf-8-unix)
            (default-directory dir))
        (unwind-protect
            (let ((status (progn
                            (insert (mapconcat #'identity events "\n") "\n")
                            (call-process-region (point-min) (point-max) node t
                                                 (list t stderr) nil
                                                 (expand-file-name "verify.mjs" dir)))))
              (unless (eq status 0)
                (ert-fail (format "verify.mjs exited with %s: %s" status
                                  (with-temp-buffer (insert-file-contents stderr)
                                                    (buffer-string)))))
              (split-string (buffer-string) "\n" t))
          (delete-file stderr))))))

(ert-deftest identity::independent-verifier-accepts-our-events ()
  (let* ((events (meta-log-federation-test-crosscheck-events))
         (tampered (meta-log-federation-test-json-set (nth 2 events) 'content "ünïcødé, altered"))
         (forged-sig (meta-log-federation-test-json-set
                      (nth 4 events) 'sig
                      (alist-get 'sig (json-parse-string (nth 5 events) :object-type 'alist))))
         (results (meta-log-federation-test-run-crosscheck
                   (append events (list tampered forged-sig)))))
    (should (>= (length events) 20))
    ;; Our own verifier agrees.
    (should (cl-every #'identity (meta-log-federation-verify-events events)))
    (should (= (length results) (+ 2 (length events))))
    (should (equal (butlast results 2) (make-list (length events) "ok")))
    (should (equal (last results 2) '("bad" "bad")))))

;;; meta-log-federation-identity-test.el ends here
