;;; meta-log-federation-identity.el --- Peer identities and signed events  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;; This file is not part of GNU Emacs.

;;; Commentary:

;; A peer is known to the others by its peer id: the public key of a
;; secp256k1 key pair derived from a BIP-39 recovery phrase along a
;; BIP-32 path (NIP-06 by default).  The private key stays inside the
;; native module: Lisp holds an opaque identity object and can only ask
;; it for its public parts or have it sign.  Events are Nostr NIP-01
;; events (JSON, BIP-340 Schnorr signatures).
;;
;; Recovery phrases:  `meta-log-federation-mnemonic-generate',
;;                    `meta-log-federation-mnemonic-valid-p'.
;; Identities:        `meta-log-federation-identity-from-mnemonic',
;;                    `meta-log-federation-identity-p', `-identity-peer-id',
;;                    `-identity-public-key', `-identity-path'.
;; Identity files:    `meta-log-federation-identity-create', `-identity-load',
;;                    `-identity-save'; the commands
;;                    `meta-log-federation-identity-new' and
;;                    `meta-log-federation-identity-show'.
;; Events:            `meta-log-federation-sign-event',
;;                    `meta-log-federation-verify-event',
;;                    `meta-log-federation-verify-event-reason',
;;                    `meta-log-federation-verify-events'.
;;
;; Errors are children of `meta-log-federation-identity-error':
;; `meta-log-federation-bad-mnemonic', `-bad-derivation-path',
;; `-bad-passphrase', `-identity-exists', `-corrupt-identity-file'.

;;; Code:

(require 'meta-log-federation-custom)

(declare-function meta-log-federation--mnemonic-generate "meta-log-federation-module")
(declare-function meta-log-federation-mnemonic-valid-p "meta-log-federation-module")
(declare-function meta-log-federation--identity-from-mnemonic "meta-log-federation-module")
(declare-function meta-log-federation-identity-p "meta-log-federation-module")
(declare-function meta-log-federation-identity-peer-id "meta-log-federation-module")
(declare-function meta-log-federation-identity-public-key "meta-log-federation-module")
(declare-function meta-log-federation-identity-path "meta-log-federation-module")
(declare-function meta-log-federation--identity-create "meta-log-federation-module")
(declare-function meta-log-federation--identity-load "meta-log-federation-module")
(declare-function meta-log-federation--identity-save "meta-log-federation-module")
(declare-function meta-log-federation--identity-file-exposure "meta-log-federation-module")
(declare-function meta-log-federation--sign-event "meta-log-federation-module")
(declare-function meta-log-federation-verify-event "meta-log-federation-module")
(declare-function meta-log-federation-verify-event-reason "meta-log-federation-module")
(declare-function meta-log-federation-verify-events "meta-log-federation-module")

(defcustom meta-log-federation-derivation-path "m/44'/1237'/0'/0/0"
  "BIP-32 path along which identities are derived from a recovery phrase.
The default is NIP-06's first account, so the same phrase gives the
same key as in Nostr clients.  Change the account number (the third
level) to keep several identities under one phrase."
  :type 'string
  :group 'meta-log-federation)

(defcustom meta-log-federation-identity-file
  (locate-user-emacs-file "meta-log/peer-identity.org")
  "File holding this Emacs' peer identity (an Org file).
It contains the recovery phrase, encrypted when it was saved with a
passphrase: keep it private and back it up."
  :type 'file
  :group 'meta-log-federation)

(defcustom meta-log-federation-mnemonic-words 12
  "Number of words of the recovery phrases of new identities."
  :type '(choice (const :tag "12 words (128 bits)" 12)
                 (const :tag "24 words (256 bits)" 24))
  :group 'meta-log-federation)

;;;; Recovery phrases

(defun meta-log-federation-mnemonic-generate (&optional words)
  "Return a new random BIP-39 English recovery phrase of WORDS words.
WORDS is 12 (the default) or 24; any other number signals
`meta-log-federation-identity-error'.  The randomness comes from the
operating system."
  (meta-log-federation--mnemonic-generate (or words 12)))

;;;; Identities

(defun meta-log-federation-identity-from-mnemonic (mnemonic &optional passphrase path)
  "Return the identity derived from the recovery phrase MNEMONIC.
PASSPHRASE is the optional BIP-39 passphrase (the \"25th word\"; nil
means none): a different passphrase gives a different identity.  PATH
is the BIP-32 derivation path, by default
`meta-log-federation-derivation-path'.

The value is an opaque object for `meta-log-federation-identity-peer-id',
`meta-log-federation-sign-event' and the like; the private key never
leaves the native module.  Signals `meta-log-federation-bad-mnemonic'
or `meta-log-federation-bad-derivation-path'.  Takes a few milliseconds:
derive once and keep the object."
  (meta-log-federation--identity-from-mnemonic
   mnemonic (or passphrase "") (or path meta-log-federation-derivation-path)))

;;;; Identity files

(defun meta-log-federation--identity-directory (file)
  "Create the directory of FILE, private to the user, unless it exists."
  (let ((dir (file-name-directory file)))
    (unless (file-directory-p dir)
      (with-file-modes #o700
        (make-directory dir t)))))

(defun meta-log-federation-identity-create (file &optional passphrase)
  "Create a new identity, save it in FILE and return it.
The identity has a fresh random recovery phrase of
`meta-log-federation-mnemonic-words' words and uses
`meta-log-federation-derivation-path'.  With PASSPHRASE (a non-empty
string) the secret part of FILE is encrypted; without it FILE holds the
recovery phrase in clear, under a warning.  FILE is written with mode
600, its directory created if needed.  An existing FILE is never
replaced: that signals `meta-log-federation-identity-exists'."
  (let ((file (expand-file-name file)))
    (meta-log-federation--identity-directory file)
    (meta-log-federation--identity-create
     file passphrase meta-log-federation-mnemonic-words
     meta-log-federation-derivation-path)))

(defun meta-log-federation-identity-load (file &optional passphrase)
  "Return the identity saved in FILE.
PASSPHRASE is needed when FILE is encrypted.  Signals
`meta-log-federation-bad-passphrase' when it is wrong or missing,
`meta-log-federation-corrupt-identity-file' when FILE is damaged,
truncated or edited, and `meta-log-federation-identity-error' when it
cannot be read.  Never modifies FILE."
  (let* ((file (expand-file-name file))
         (identity (meta-log-federation--identity-load file passphrase)))
    (meta-log-federation--warn-if-exposed file)
    identity))

(defun meta-log-federation--warn-if-exposed (file)
  "Warn when the identity FILE can be read by other users."
  (let ((warning (and (fboundp 'meta-log-federation--identity-file-exposure)
                      (meta-log-federation--identity-file-exposure file))))
    (when warning
      (display-warning 'meta-log-federation warning :warning))
    warning))

(defun meta-log-federation--with-passphrase (passphrase function)
  "Call FUNCTION with PASSPHRASE, then wipe PASSPHRASE from memory.
PASSPHRASE is a string typed by the person (or nil); `clear-string'
overwrites it, so the secret does not linger in the Lisp heap."
  (unwind-protect
      (funcall function passphrase)
    (when (stringp passphrase)
      (clear-string passphrase))))

(defun meta-log-federation-identity-save (identity file &optional passphrase overwrite)
  "Save IDENTITY in FILE and return FILE's absolute name.
With PASSPHRASE (a non-empty string) the recovery phrase is encrypted;
without it, it is written in clear under a warning.  The write is
atomic and FILE gets mode 600.  An existing FILE is replaced only when
OVERWRITE is non-nil; otherwise that signals
`meta-log-federation-identity-exists'."
  (let ((file (expand-file-name file)))
    (meta-log-federation--identity-directory file)
    (meta-log-federation--identity-save identity file passphrase overwrite)
    file))

(defun meta-log-federation--read-new-passphrase ()
  "Ask for a passphrase to encrypt an identity file; return nil for none."
  (let ((pass (read-passwd "Passphrase to encrypt the file (empty for none): " t)))
    (unless (equal pass "") pass)))

(defun meta-log-federation-identity-new (file &optional passphrase)
  "Create a new peer identity in FILE, encrypted with PASSPHRASE if non-nil.
Interactively, ask for FILE (by default
`meta-log-federation-identity-file') and for a passphrase (empty for
none).  Show the new peer id and return the identity."
  (interactive
   (list (read-file-name (format-prompt "Save the new identity in"
                                        (abbreviate-file-name
                                         meta-log-federation-identity-file))
                         (file-name-directory meta-log-federation-identity-file)
                         meta-log-federation-identity-file)
         (meta-log-federation--read-new-passphrase)))
  (let* ((encrypted (and passphrase t))
         (identity (if (called-interactively-p 'any)
                       (meta-log-federation--with-passphrase
                        passphrase
                        (lambda (pass) (meta-log-federation-identity-create file pass)))
                     (meta-log-federation-identity-create file passphrase))))
    (message "New peer identity %s in %s%s; back this file up, it holds the recovery phrase"
             (meta-log-federation-identity-peer-id identity)
             (abbreviate-file-name (expand-file-name file))
             (if encrypted " (encrypted)" ""))
    identity))

(defun meta-log-federation-identity-show (&optional file passphrase)
  "Show the peer id, public key and derivation path of the identity in FILE.
FILE defaults to `meta-log-federation-identity-file'; interactively,
with a prefix argument, ask for it.  When FILE is encrypted and
PASSPHRASE is nil, ask for the passphrase (interactively only).
Return the identity."
  (interactive
   (list (when current-prefix-arg
           (read-file-name (format-prompt "Identity file"
                                          (abbreviate-file-name
                                           meta-log-federation-identity-file))
                           (file-name-directory meta-log-federation-identity-file)
                           meta-log-federation-identity-file t))))
  (let* ((asking (called-interactively-p 'any))
         (file (expand-file-name (or file meta-log-federation-identity-file)))
         (identity
          (condition-case err
              (meta-log-federation-identity-load file passphrase)
            (meta-log-federation-bad-passphrase
             (if (and asking (null passphrase))
                 (meta-log-federation--with-passphrase
                  (read-passwd (format "Passphrase of %s: " (abbreviate-file-name file)))
                  (lambda (pass) (meta-log-federation-identity-load file pass)))
               (signal (car err) (cdr err)))))))
    (message "Peer id %s\npublic key %s\npath %s (%s)"
             (meta-log-federation-identity-peer-id identity)
             (meta-log-federation-identity-public-key identity)
             (meta-log-federation-identity-path identity)
             (abbreviate-file-name file))
    identity))

;;;; Events

(defun meta-log-federation-sign-event (identity kind content &optional tags)
  "Return a new event signed by IDENTITY, as a JSON string.
KIND is an integer from 0 to 65535, CONTENT a string and TAGS a list
of lists of strings, such as ((\"t\" \"meta-log\") (\"p\" PEER-ID)).
The event is a Nostr NIP-01 event: its created_at is the current time,
its id the SHA-256 of its canonical form and its signature BIP-340
Schnorr, so `meta-log-federation-verify-event' and any Nostr software
can check it."
  (meta-log-federation--sign-event identity kind content tags))

(provide 'meta-log-federation-identity)
;;; meta-log-federation-identity.el ends here
