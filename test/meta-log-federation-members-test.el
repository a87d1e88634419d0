;;; meta-log-federation-members-test.el --- Owned and private shares across Emacs processes  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;;; Commentary:

;; Issue 13: a share exists only if its origin created it, and a share
;; with members reaches only them.  This Emacs and batch Emacs peers
;; federate over a real broker; the attacker is a plain MQTT client
;; (mosquitto_pub) publishing validly signed events.

;;; Code:

(require 'meta-log-federation-test-helpers)
(require 'meta-log-federation-federation-test)
(require 'meta-log-federation-hostile-test)
(require 'meta-log-federation-sync-test)
(require 'json)

(defun meta-log-federation-members-test-refused (reason)
  "Return how many sync messages this Emacs refused for REASON."
  (or (cdr (assoc reason (meta-log-federation-sync-refusals))) 0))

(defun meta-log-federation-members-test-files (dir)
  "Return every file under DIR (recursively), or nil if it does not exist."
  (and (file-directory-p dir) (directory-files-recursively dir "")))

(defun meta-log-federation-members-test-sync-event (identity kind content &optional to)
  "Return an event of KIND with CONTENT signed by IDENTITY for the sync topic.
TO, a peer id, adds a `p' tag."
  (meta-log-federation-sign-event
   identity kind (json-encode content)
   (append `(("v" ,(meta-log-federation--protocol-version)) ("t" "sync")) (and to `(("p" ,to))))))

(ert-deftest members::a-forged-share-is-refused-and-writes-nothing ()
  "The attack of issue 13, from a plain MQTT client, against three peers."
  (meta-log-federation-test-with-federation
    (let* ((me (plist-get (meta-log-federation-get-local-peer-identity) :peer-id))
           (bob (meta-log-federation-test-start-peer "bob"))
           (carol (meta-log-federation-test-start-peer "carol"))
           (bob-id (process-get bob 'peer-id))
           (evil (meta-log-federation-test-hostile-identity))
           (evil-id (meta-log-federation-identity-peer-id evil))
           (full-data nil)
           (asked-evil nil)
           (warnings nil))
      (should (meta-log-federation-wait-until
               (lambda () (and (meta-log-federation-peer bob-id)
                               (meta-log-federation-peer (process-get carol 'peer-id))))
               20))
      ;; The attacker copies real automerge data from the sync topic (here, our own
      ;; announcement of a file we share), and watches for requests addressed to it.
      (meta-log-federation-mqtt-subscribe
       "canvasl/sync"
       (lambda (_topic payload)
         (let* ((ev (json-parse-string payload :object-type 'plist))
                (content (ignore-errors
                           (json-parse-string (plist-get ev :content) :object-type 'plist))))
           (when (and (not full-data) (eq (plist-get content :full) t))
             (setq full-data (plist-get content :data)))
           (when (and (= (plist-get ev :kind) 20772)
                      (seq-some (lambda (tag) (equal tag (vector "p" evil-id)))
                                (plist-get ev :tags)))
             (setq asked-evil t))))
       1)
      (meta-log-federation-share-canvasl
       (meta-log-federation-test-canvas (meta-log-federation-test-peer-dir "own")))
      (should (meta-log-federation-wait-until (lambda () full-data) 10))
      (cl-letf (((symbol-function 'display-warning)
                 (lambda (_type message &rest _) (push message warnings))))
        ;; 1. A whole document of a share named after this Emacs.
        (meta-log-federation-test-mosquitto-pub
         "canvasl/sync"
         (meta-log-federation-members-test-sync-event
          evil 4771 `((v . 1) (share . ,(format "canvasl://%s/forged.canvasl" me))
                      (op . "change") (full . t) (data . ,full-data))))
        (should (meta-log-federation-wait-until
                 (lambda () (>= (meta-log-federation-members-test-refused "not-origin") 1)) 10))
        ;; 2. A change of a share "of Bob's", then the answer to the request it provokes.
        (let ((url (format "canvasl://%s/forged.canvasl" bob-id)))
          (meta-log-federation-test-mosquitto-pub
           "canvasl/sync"
           (meta-log-federation-members-test-sync-event
            evil 4771 `((v . 1) (share . ,url) (op . "change") (full . :json-false)
                        (data . ,full-data))))
          (should (meta-log-federation-wait-until (lambda () asked-evil) 10))
          (meta-log-federation-test-mosquitto-pub
           "canvasl/sync"
           (meta-log-federation-members-test-sync-event
            evil 4772 `((v . 1) (share . ,url) (op . "response") (full . t) (data . ,full-data))
            me)))
        (should (meta-log-federation-wait-until
                 (lambda () (>= (meta-log-federation-members-test-refused "not-origin") 2)) 10)))
      ;; Reported once, naming the attacker.
      (should (= 1 (cl-count-if (lambda (w) (string-search (substring evil-id 0 12) w))
                                warnings)))
      ;; Nothing written anywhere, and no such share.
      (should-not (seq-some (lambda (f) (string-search "forged" f))
                            (append
                             (meta-log-federation-members-test-files meta-log-federation-sync-directory)
                             (meta-log-federation-members-test-files
                              meta-log-federation-sync-state-directory)
                             (meta-log-federation-members-test-files
                              (expand-file-name "sync" (process-get bob 'dir)))
                             (meta-log-federation-members-test-files
                              (expand-file-name "sync" (process-get carol 'dir))))))
      (should-not (seq-some (lambda (s) (string-search "forged" (plist-get s :url)))
                            (meta-log-federation-shared-canvasl-files t))))))

(defun meta-log-federation-members-test-sniffer (buffer)
  "Start a plain `mosquitto_sub' on every topic of the test broker, into BUFFER."
  (make-process
   :name "members-sniffer" :buffer buffer :noquery t
   :command (list (or (executable-find "mosquitto_sub")
                      (ert-skip "mosquitto_sub is not installed (apt-get install mosquitto-clients)"))
                  "-h" "127.0.0.1"
                  "-p" (number-to-string meta-log-federation-test-broker-port)
                  "-t" "#" "-v")))

(defun meta-log-federation-members-test-grep (string dir)
  "Return the files under DIR that contain STRING."
  (cl-remove-if-not (lambda (f) (string-search string (meta-log-federation-test-file-string f)))
                    (meta-log-federation-members-test-files dir)))

(ert-deftest members::a-share-with-members-reaches-only-them ()
  "Alice shares with Bob only: Carol and the broker see only ciphertext.
Carol's edits are refused; once removed, Bob cannot read a later edit."
  (meta-log-federation-test-with-federation
    (let* ((me (plist-get (meta-log-federation-get-local-peer-identity) :peer-id))
           (bob (meta-log-federation-test-start-peer "bob"))
           (carol (meta-log-federation-test-start-peer "carol"))
           (bob-id (process-get bob 'peer-id))
           (carol-id (process-get carol 'peer-id))
           (file (meta-log-federation-test-canvas (meta-log-federation-test-peer-dir "own")))
           (name (file-name-nondirectory file))
           (bob-file (meta-log-federation-test-peer-file bob me name))
           (carol-file (meta-log-federation-test-peer-file carol me name))
           (canary (format "canary-%d" (random 100000000)))
           (late (format "late-%d" (random 100000000)))
           (sniffed (generate-new-buffer " *members-sniffer*"))
           (sniffer (meta-log-federation-members-test-sniffer sniffed))
           (url nil))
      (unwind-protect
          (progn
            (should (meta-log-federation-wait-until
                     (lambda () (and (meta-log-federation-peer bob-id)
                                     (meta-log-federation-peer carol-id)))
                     20))
            (should-error (meta-log-federation-share-canvasl file :members '("not-a-peer-id"))
                          :type 'meta-log-federation-sync-error)
            (setq url (meta-log-federation-share-canvasl file :members (list bob-id)))
            (should (equal (meta-log-federation-share-members url) (list bob-id)))
            (should (meta-log-federation-test-wait-converged (list file bob-file) 20))
            ;; An edit reaches Bob; Carol, who received the same traffic, holds nothing.
            (meta-log-federation-test-edit file "b" "text" (format "\"%s\"" canary))
            (should (meta-log-federation-wait-until
                     (lambda () (string-search canary (meta-log-federation-test-file-string bob-file)))
                     20))
            (should-not (file-exists-p carol-file))
            (should-not (meta-log-federation-members-test-grep canary (process-get carol 'dir)))
            ;; Carol's own edit of the share (automerge data of a canvas she shares, signed
            ;; with her key, sent as she would send it) is refused, and so is her request.
            (let ((carol-key (meta-log-federation-identity-load
                              (expand-file-name "identity.org" (process-get carol 'dir))))
                  (carol-data nil)
                  (before (meta-log-federation-members-test-refused "not-member"))
                  (text (meta-log-federation-test-file-string file)))
              (meta-log-federation-mqtt-subscribe
               "canvasl/sync"
               (lambda (_topic payload)
                 (let* ((ev (json-parse-string payload :object-type 'plist))
                        (content (ignore-errors
                                   (json-parse-string (plist-get ev :content) :object-type 'plist))))
                   (when (and (equal (plist-get ev :pubkey) carol-id)
                              (eq (plist-get content :full) t))
                     (setq carol-data (plist-get content :data)))))
               1)
              (meta-log-federation-send-peer-message carol-id "share:carols.canvasl")
              (should (meta-log-federation-wait-until (lambda () carol-data) 20))
              (meta-log-federation-mqtt-publish
               "canvasl/sync"
               (meta-log-federation-members-test-sync-event
                carol-key 4771 `((v . 1) (share . ,url) (op . "change") (full . :json-false)
                                 (data . ,carol-data)))
               1)
              (meta-log-federation-mqtt-publish
               "canvasl/sync"
               (meta-log-federation-members-test-sync-event
                carol-key 20772 `((v . 1) (share . ,url) (op . "request") (heads . "")))
               1)
              (should (meta-log-federation-wait-until
                       (lambda () (>= (meta-log-federation-members-test-refused "not-member")
                                      (+ before 2)))
                       10))
              (should (equal text (meta-log-federation-test-file-string file))))
            ;; The origin removes Bob (the key changes), edits, then adds Carol: she gets
            ;; the share with that edit; Bob does not.
            (should (equal (meta-log-federation-share-remove-member url bob-id) nil))
            (should (equal (meta-log-federation-share-members url) nil))
            (meta-log-federation-test-edit file "a" "text" (format "\"%s\"" late))
            (should (equal (meta-log-federation-share-add-member url carol-id) (list carol-id)))
            (should (meta-log-federation-wait-until
                     (lambda () (and (file-exists-p carol-file)
                                     (string-search late (meta-log-federation-test-file-string
                                                          carol-file))))
                     20))
            (should-not (meta-log-federation-members-test-grep late (process-get bob 'dir)))
            ;; The broker carried all of it, and no plaintext: no canary, no file name.
            (with-current-buffer sniffed
              (should (string-search "\"kind\":4771" (buffer-string)))
              (should (string-search "sealed" (buffer-string)))
              (should-not (string-search canary (buffer-string)))
              (should-not (string-search late (buffer-string)))
              ;; (Only the events the test forged as Carol, in clear, name the share.)
              (should-not (seq-some
                           (lambda (line)
                             (and (string-search name line)
                                  (not (string-search (format "\"pubkey\":\"%s\"" carol-id)
                                                      line))))
                           (split-string (buffer-string) "\n"))))
            (kill-buffer (find-buffer-visiting file)))
        (delete-process sniffer)
        (kill-buffer sniffed)))))

;; Item 3 of issue 13, re-admission: a member the origin removed and later
;; added again gets the current key and the document by itself.
(ert-deftest members::a-removed-member-added-again-syncs-again ()
  "Alice removes Bob, edits, adds him again: Bob gets that edit and later ones.
Carol, a member throughout, gets both; the broker sees neither canary."
  (meta-log-federation-test-with-federation
    (let* ((me (plist-get (meta-log-federation-get-local-peer-identity) :peer-id))
           (bob (meta-log-federation-test-start-peer "bob"))
           (carol (meta-log-federation-test-start-peer "carol"))
           (bob-id (process-get bob 'peer-id))
           (carol-id (process-get carol 'peer-id))
           (file (meta-log-federation-test-canvas (meta-log-federation-test-peer-dir "own")))
           (name (file-name-nondirectory file))
           (bob-file (meta-log-federation-test-peer-file bob me name))
           (carol-file (meta-log-federation-test-peer-file carol me name))
           (away (format "away-%d" (random 100000000)))
           (back (format "back-%d" (random 100000000)))
           (sniffed (generate-new-buffer " *members-sniffer*"))
           (sniffer (meta-log-federation-members-test-sniffer sniffed))
           (url nil))
      (unwind-protect
          (progn
            (should (meta-log-federation-wait-until
                     (lambda () (and (meta-log-federation-peer bob-id)
                                     (meta-log-federation-peer carol-id)))
                     20))
            (setq url (meta-log-federation-share-canvasl file :members (list bob-id carol-id)))
            (should (meta-log-federation-test-wait-converged (list file bob-file carol-file) 20))
            ;; Removed: Bob does not get the edit made while he is out.
            (should (equal (meta-log-federation-share-remove-member url bob-id)
                           (list carol-id)))
            (meta-log-federation-test-edit file "a" "text" (format "\"%s\"" away))
            (should (meta-log-federation-wait-until
                     (lambda () (string-search away (meta-log-federation-test-file-string
                                                     carol-file)))
                     20))
            (should-not (string-search away (meta-log-federation-test-file-string bob-file)))
            ;; Added again, with nothing done on Bob's side: the key and that edit reach him.
            (should (equal (sort (meta-log-federation-share-add-member url bob-id) #'string<)
                           (sort (list bob-id carol-id) #'string<)))
            (should (meta-log-federation-wait-until
                     (lambda () (string-search away (meta-log-federation-test-file-string
                                                     bob-file)))
                     20))
            ;; And he is a member again for what follows.
            (meta-log-federation-test-edit file "b" "text" (format "\"%s\"" back))
            (should (meta-log-federation-test-wait-converged (list file bob-file carol-file) 20))
            (should (string-search back (meta-log-federation-test-file-string bob-file)))
            (with-current-buffer sniffed
              (should (string-search "sealed" (buffer-string)))
              (should-not (string-search away (buffer-string)))
              (should-not (string-search back (buffer-string))))
            (kill-buffer (find-buffer-visiting file)))
        (delete-process sniffer)
        (kill-buffer sniffed)))))

(provide 'meta-log-federation-members-test)
;;; meta-log-federation-members-test.el ends here
