;;; meta-log-federation-hostile-test.el --- What a hostile peer cannot do  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;;; Commentary:

;; Hostile input from outside: validly signed events published by a plain
;; MQTT client (mosquitto_pub), look-alike names, damaged blackboards.
;; This Emacs is the victim; the attacker signs with the module's own
;; signing function, so every event passes the signature check and only
;; the defences under test stand in the way.

;;; Code:

(require 'meta-log-federation-test-helpers)
(require 'meta-log-federation-federation-test)
(require 'org)
(require 'org-element)
(require 'json)

(defun meta-log-federation-test-hostile-identity ()
  "Return a fresh identity for an attacker."
  (meta-log-federation-identity-from-mnemonic (meta-log-federation-mnemonic-generate)))

(defun meta-log-federation-hostile-test-presence (identity name)
  "Return a presence event signed by IDENTITY announcing NAME, as JSON."
  (let ((id (meta-log-federation-identity-peer-id identity))
        (now (truncate (float-time))))
    (meta-log-federation-sign-event
     identity 20770
     (json-encode `((peer_id . ,id) (name . ,name) (software . "evil/1")
                    (protocol . ,(meta-log-federation--protocol-version)) (capabilities . []) (status . "online")
                    (since . ,now)))
     `(("v" ,(meta-log-federation--protocol-version)) ("t" "presence")))))

(defun meta-log-federation-test-mosquitto-pub (topic payload)
  "Publish PAYLOAD on TOPIC of the test broker with mosquitto_pub."
  (let ((pub (or (executable-find "mosquitto_pub")
                 (ert-skip "mosquitto_pub is not installed (apt-get install mosquitto-clients)"))))
    (with-temp-buffer
      (let ((status (call-process pub nil t nil "-h" "127.0.0.1"
                                  "-p" (number-to-string meta-log-federation-test-broker-port)
                                  "-q" "1" "-t" topic "-m" payload)))
        (unless (eq status 0)
          (error "Mosquitto_pub failed: %s" (buffer-string)))))))

(defun meta-log-federation-test-announce-as (identity name)
  "Publish IDENTITY's presence with NAME on its presence topic."
  (meta-log-federation-test-mosquitto-pub
   (format "canvasl/peers/%s/presence" (meta-log-federation-identity-peer-id identity))
   (meta-log-federation-hostile-test-presence identity name)))

(defun meta-log-federation-test-org-structure (file)
  "Return (HEADINGS DRAWERS BLOCKS LINKS) counted by Org's parser in FILE."
  (with-temp-buffer
    (insert-file-contents file)
    (let ((org-inhibit-startup t)
          (org-mode-hook nil))
      (delay-mode-hooks (org-mode)))
    (let ((tree (org-element-parse-buffer)))
      (mapcar (lambda (types) (length (org-element-map tree types #'identity)))
              '(headline property-drawer (src-block example-block export-block
                                          special-block verse-block quote-block)
                         link)))))

(ert-deftest hostile::names-with-structure-are-refused-and-others-escaped ()
  "Hostile names sent by a plain MQTT client never become Org structure."
  (meta-log-federation-test-with-federation
    (let* ((victim (meta-log-federation-test-start-peer "victim"))
           (victim-id (process-get victim 'peer-id))
           (blackboard (expand-file-name "blackboard.org" (file-name-directory
                                                           meta-log-federation-trust-file)))
           (injection (format "mallory\n*** Peer: %s\n:PROPERTIES:\n:PEER_ID: %s\n:PEER_NAME: forged\n:END:\n#+begin_src emacs-lisp\n(delete-directory \"~\" t)\n#+end_src\n[[elisp:(kill-emacs)][click me]]"
                              victim-id victim-id))
           (linky "[[elisp:(kill-emacs)][click]] {{{m}}} src_elisp{(kill-emacs)} <<t>>")
           (evil (meta-log-federation-test-hostile-identity))
           (evil-id (meta-log-federation-identity-peer-id evil))
           (sly (meta-log-federation-test-hostile-identity))
           (sly-id (meta-log-federation-identity-peer-id sly))
           (malformed-before (meta-log-federation-drop-count "malformed")))
      (should (meta-log-federation-wait-until
               (lambda () (eq (meta-log-federation-test-status victim-id) 'online)) 20))
      ;; A name with line breaks is refused outright.
      (meta-log-federation-test-announce-as evil injection)
      (should (meta-log-federation-wait-until
               (lambda () (> (meta-log-federation-drop-count "malformed") malformed-before))
               10))
      (should-not (member evil-id (meta-log-federation-discover-peers)))
      ;; A one-line name full of Org markup is accepted, as data.
      (meta-log-federation-test-announce-as sly linky)
      (should (meta-log-federation-wait-until
               (lambda () (member sly-id (meta-log-federation-discover-peers))) 10))
      (should (equal (plist-get (meta-log-federation-peer sly-id) :name) linky))
      ;; A key that never announces itself, sending one valid signed event:
      ;; accepted, but neither pinned in trust.json nor put in the blackboard.
      (let* ((stranger (meta-log-federation-test-hostile-identity))
             (stranger-id (meta-log-federation-identity-peer-id stranger)))
        (meta-log-federation-test-mosquitto-pub
         "canvasl/sync"
         (meta-log-federation-sign-event stranger 4771 "{}" `(("v" ,(meta-log-federation--protocol-version)) ("t" "sync"))))
        (should (meta-log-federation-wait-until
                 (lambda () (member stranger-id (meta-log-federation-discover-peers))) 10))
        (meta-log-federation--save-trust)
        (should-not (string-search stranger-id
                                   (with-temp-buffer
                                     (insert-file-contents meta-log-federation-trust-file)
                                     (buffer-string))))
        (meta-log-federation-sync-blackboard)
        (should-not (string-search stranger-id
                                   (with-temp-buffer
                                     (insert-file-contents blackboard)
                                     (buffer-string)))))
      (meta-log-federation-sync-blackboard)
      ;; Three peers' worth of structure and nothing else: the top heading,
      ;; Peers, CanvasL State and one entry per peer; one drawer each.
      (let ((expected-peers (length (meta-log-federation--announced-peers
                                     (meta-log-federation-peers)))))
        (should (equal (meta-log-federation-test-org-structure blackboard)
                       (list (+ 3 expected-peers) (1+ expected-peers) 0 0))))
      (with-temp-buffer
        (insert-file-contents blackboard)
        (should-not (search-forward "[[" nil t))
        (goto-char (point-min))
        (should (search-forward ":PEER_NAME: %5B%5Belisp:" nil t))
        (goto-char (point-min))
        (should-not (re-search-forward "^[ \t]*#\\+begin" nil t))
        (goto-char (point-min))
        (should (= 1 (how-many (format "^:PEER_ID: %s$" victim-id)))))
      ;; The peers buffer: one line per peer, the name shown as sent.
      (let ((buffer (meta-log-federation-list-peers)))
        (unwind-protect
            (with-current-buffer buffer
              (should (= (count-lines (point-min) (point-max))
                         (length (meta-log-federation-discover-peers))))
              (goto-char (point-min))
              (should (search-forward (substring linky 0 20) nil t))
              (should-not (search-forward "\n*** " nil t)))
          (kill-buffer buffer))))))

(ert-deftest hostile::safe-name-escapes-what-could-break-a-line ()
  "The display helper turns every invisible or line-breaking character into an escape."
  (should (equal (meta-log-federation--safe-name "a\nb") "a\\u000Ab"))
  (should (equal (meta-log-federation--safe-name "alice\u202e") "alice\\u202E"))
  (should (equal (meta-log-federation--safe-name "al\u00adice") "al\\u00ADice"))
  (should (equal (meta-log-federation--safe-name "a\u2028b\u0085") "a\\u2028b\\u0085"))
  (should (equal (meta-log-federation--safe-name "") "?"))
  (should (equal (meta-log-federation--safe-name nil) "?"))
  (should (<= (length (meta-log-federation--safe-name (make-string 500 ?x)))
              meta-log-federation--max-shown-name))
  (should (equal (meta-log-federation--org-value "[[x]] {y} <z> 50%\n")
                 "%5B%5Bx%5D%5D %7By%7D %3Cz%3E 50%25\\u000A")))

(ert-deftest hostile::blackboard-entries-are-found-by-peer-id-not-heading ()
  "A forged heading naming a peer does not capture that peer's updates."
  (let* ((victim (make-string 64 ?a))
         (other (make-string 64 ?b))
         (peer (lambda (id name)
                 (list :peer-id id :name name :status 'online :trust 'pinned
                       :last-seen 0 :address "x")))
         (text (concat "* Federation Blackboard\n** Peers\n"
                       ;; A forged heading first: the victim's id in its text,
                       ;; another peer's id in its drawer.
                       (format "*** Peer: %s\n:PROPERTIES:\n:PEER_ID: %s\n:PEER_NAME: forged\n:END:\n"
                               victim other)
                       (format "*** Peer: %s\n:PROPERTIES:\n:PEER_ID: %s\n:PEER_NAME: old\n:END:\nmy notes\n"
                               "renamed by the user" victim)
                       "** CanvasL State\n")))
    (with-temp-buffer
      (insert text)
      (meta-log-federation--update-blackboard-text (list (funcall peer victim "alice")))
      (goto-char (point-min))
      ;; The forged entry is untouched, the genuine one updated in place,
      ;; the user's notes below it kept, and nothing added.
      (should (search-forward (format ":PEER_ID: %s\n:PEER_NAME: forged" other) nil t))
      (should (= 1 (how-many ":PEER_NAME: alice" (point-min) (point-max))))
      (should (= 0 (how-many ":PEER_NAME: old" (point-min) (point-max))))
      (should (search-forward "my notes" nil t))
      (should (= 2 (how-many "^\\*\\*\\* " (point-min) (point-max))))
      ;; A new peer gets an entry of its own at the end of Peers.
      (meta-log-federation--update-blackboard-text
       (list (funcall peer (make-string 64 ?c) "carol")))
      (should (= 3 (how-many "^\\*\\*\\* " (point-min) (point-max))))
      (goto-char (point-min))
      (should (< (search-forward ":PEER_NAME: carol") (search-forward "** CanvasL State"))))))

(ert-deftest hostile::blackboard-rewrites-only-changed-peers ()
  "Unchanged peers are not written again; the file is private and replaced whole."
  (let* ((dir (make-temp-file "bb-" t))
         (file (expand-file-name "bb.org" dir))
         (meta-log-federation--blackboard file)
         (peers (cl-loop for i below 500
                         collect (list :peer-id (format "%064x" i) :name (format "p%d" i)
                                       :status 'online :trust 'pinned :last-seen 0
                                       :address "x"))))
    (unwind-protect
        (progn
          (clrhash meta-log-federation--blackboard-written)
          (should (= 500 (length (meta-log-federation--record-peers peers t))))
          (should (= (logand (file-modes file) #o777) #o600))
          (should (null (meta-log-federation--record-peers peers t)))
          (setf (plist-get (nth 400 peers) :status) 'stale)
          (should (equal (mapcar (lambda (p) (plist-get p :peer-id))
                                 (meta-log-federation--record-peers peers t))
                         (list (format "%064x" 400))))
          (with-temp-buffer
            (insert-file-contents file)
            (should (= 500 (how-many "^:PEER_STATUS: " (point-min) (point-max))))
            (should (= 1 (how-many "^:PEER_STATUS: stale" (point-min) (point-max)))))
          (should (equal (directory-files dir nil "\\`[^.]") '("bb.org"))))
      (clrhash meta-log-federation--blackboard-written)
      (delete-directory dir t))))

(ert-deftest hostile::a-readable-identity-file-is-warned-about ()
  "Loading an identity file other users can read gives a warning saying how to fix it."
  (let* ((dir (make-temp-file "id-" t))
         (file (expand-file-name "id.org" dir))
         (warnings nil))
    (unwind-protect
        (cl-letf (((symbol-function 'display-warning)
                   (lambda (_type message &rest _) (push message warnings))))
          (meta-log-federation-identity-create file)
          (meta-log-federation-identity-load file)
          (should-not warnings)
          (set-file-modes file #o644)
          (should (meta-log-federation-identity-p (meta-log-federation-identity-load file)))
          (should (= 1 (length warnings)))
          (should (string-match-p "chmod 600" (car warnings)))
          (should (string-match-p "0644" (car warnings))))
      (delete-directory dir t))))

(ert-deftest hostile::interactive-init-offers-a-passphrase-and-wipes-it ()
  "A person creating an identity is offered a passphrase; batch is never asked."
  (let* ((dir (make-temp-file "id-" t))
         (meta-log-federation-identity-file (expand-file-name "id.org" dir))
         (typed (copy-sequence "correct horse battery"))
         (asked nil))
    (unwind-protect
        (progn
          ;; Batch: no question, an unencrypted file, as before.
          (cl-letf (((symbol-function 'y-or-n-p) (lambda (&rest _) (setq asked t))))
            (meta-log-federation--load-or-create-identity))
          (should-not asked)
          (should (string-match-p ":ENCRYPTION: none"
                                  (with-temp-buffer
                                    (insert-file-contents meta-log-federation-identity-file)
                                    (buffer-string))))
          (delete-file meta-log-federation-identity-file)
          ;; A person at the keyboard: asked, and the file is encrypted.
          (cl-letf (((symbol-function 'meta-log-federation--may-ask-p) (lambda () t))
                    ((symbol-function 'y-or-n-p) (lambda (&rest _) (setq asked t)))
                    ((symbol-function 'read-passwd) (lambda (&rest _) typed)))
            (should (meta-log-federation-identity-p
                     (meta-log-federation--load-or-create-identity))))
          (should asked)
          (should (string-match-p ":ENCRYPTION: argon2id"
                                  (with-temp-buffer
                                    (insert-file-contents meta-log-federation-identity-file)
                                    (buffer-string))))
          ;; The typed passphrase was wiped from memory.
          (should-not (string-match-p "horse" typed))
          (should (meta-log-federation-identity-p
                   (meta-log-federation-identity-load meta-log-federation-identity-file
                                                      "correct horse battery"))))
      (delete-directory dir t))))

(provide 'meta-log-federation-hostile-test)
;;; meta-log-federation-hostile-test.el ends here
