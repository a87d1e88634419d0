;;; meta-log-federation-test-peer.el --- A scripted federation peer for multi-process tests  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;;; Commentary:

;; Run by the tests as a separate batch Emacs:
;;   emacs --batch -Q -L lisp --eval (setq test-peer-name ... test-peer-dir ...
;;         test-peer-broker ...) -l test/meta-log-federation-test-peer.el
;; It starts federation and reports what happens on stderr, one line
;; each, prefixed "PEER: ": INIT TIME, READY ID, ONLINE ID NAME TIME,
;; OFFLINE ID REASON,
;; MSG FROM TEXT, RAW STATUS REASON CONTAINS-PLAINTEXT.  Peer messages
;; steer it: "quit" shuts it down cleanly, "echo:X" sends "echoed:X"
;; back, "bench:..." is only counted and "bench-count" answers the count,
;; "call-stats" answers the longest module call (name and microseconds),
;; "spy:PEER-ID" subscribes to PEER-ID's message topic as a plain
;; MQTT subscriber, hands what passes there to its session and reports
;; the session's verdict and whether the secret was readable (RAW),
;; "edit:URL|ID|FIELD|JSON" edits an entry of a synced file in a buffer
;; and saves it, reports EDITED ID, then answers "edited:ID";
;; "share:NAME" writes a small canvas NAME in its directory, shares it,
;; reports SHARED URL and answers "shared".  UPDATED URL CREATED FILE
;; reports each remote update of a synced file.

;;; Code:

(require 'meta-log-federation)
(require 'cl-lib)
(require 'json)

(declare-function meta-log-federation--session-receive "meta-log-federation-module")
(declare-function meta-log-federation--reset-max-call "meta-log-federation-module")

(defvar test-peer-name "peer" "Display name.")
(defvar test-peer-dir nil "Directory for this peer's files.")
(defvar test-peer-broker nil "Broker URL.")
(defvar test-peer-spy-secret nil "Plaintext a spy looks for.")
(defvar test-peer-bench-count 0 "Benchmark messages received.")

(defun test-peer-say (format-string &rest args)
  "Report FORMAT-STRING with ARGS on one line."
  (message "PEER: %s" (apply #'format format-string args)))

(setq meta-log-federation-identity-file (expand-file-name "identity.org" test-peer-dir)
      meta-log-federation-trust-file (expand-file-name "trust.json" test-peer-dir)
      meta-log-federation-display-name test-peer-name
      meta-log-federation-sync-directory (expand-file-name "sync/" test-peer-dir)
      meta-log-federation-sync-state-directory (expand-file-name "sync-state/" test-peer-dir)
      meta-log-federation-mqtt-keep-alive 1
      meta-log-federation-verbose nil)

(add-hook 'meta-log-federation-peer-online-functions
          (lambda (id name) (test-peer-say "ONLINE %s %s %.6f" id name (float-time))))
(add-hook 'meta-log-federation-peer-offline-functions
          (lambda (id reason) (test-peer-say "OFFLINE %s %s" id reason)))

(defun test-peer-edit-entry (file id field value)
  "Set FIELD of entry ID in FILE to VALUE (JSON) and save, as a user would."
  (with-current-buffer (find-file-noselect file)
    ;; A person sees the file before typing: a change written just before the
    ;; visit's hold took effect is shown first (else Emacs asks whether to
    ;; edit a file changed on disk, an error in batch).
    (meta-log-federation-wait-until #'always 5)
    (goto-char (point-min))
    (re-search-forward (format "\"id\":\"%s\"" (regexp-quote id)))
    (let* ((line (buffer-substring (line-beginning-position) (line-end-position)))
           (entry (json-parse-string line :object-type 'alist)))
      (setf (alist-get (intern field) entry) (json-parse-string value))
      (delete-region (line-beginning-position) (line-end-position))
      (insert (json-serialize entry)))
    (save-buffer)))

(defun test-peer-share (name)
  "Write a small canvas called NAME (a file name, no directory) and share it.
Return the share's URL."
  (let ((file (expand-file-name (file-name-nondirectory name)
                                (expand-file-name "own/" test-peer-dir))))
    (make-directory (file-name-directory file) t)
    (with-temp-file file
      (insert "@version 1.0\n@schema canvasl\n"
              (json-serialize `((id . "w") (type . "text")
                                (text . ,(format "%s from %s" name test-peer-name))))
              "\n"))
    (meta-log-federation-share-canvasl file)))

(add-hook 'meta-log-federation-canvasl-updated-functions
          (lambda (file url created)
            (test-peer-say "UPDATED %s %s %s" url created file)))

(defvar test-peer-spy-visible nil
  "Non-nil once the spy saw `test-peer-spy-secret' in a payload it watched.")

(defvar test-peer-spy-pending 0
  "Payloads the spy handed to the session and has no verdict for yet.")

(defun test-peer-spy (peer-id)
  "Watch PEER-ID's messages topic as a plain subscriber.
Each payload is looked at for the secret, then handed to this peer's
session, which checks it as any received message; the session's
verdict comes back as a `dropped' event (a RAW line) or, were the
message readable here, as a peer message."
  (let ((topic (format "canvasl/peers/%s/messages" peer-id)))
    (add-hook 'meta-log-federation-dropped-functions
              (lambda (reason _text _peer)
                ;; Only while a watched payload waits: other drops are not the spy's.
                (when (> test-peer-spy-pending 0)
                  (setq test-peer-spy-pending (1- test-peer-spy-pending))
                  (test-peer-say "RAW dropped %s %s" reason
                                 (if test-peer-spy-visible "plaintext-visible" "opaque")))))
    (meta-log-federation-mqtt-subscribe
     topic
     (lambda (topic payload)
       (when (and test-peer-spy-secret (string-search test-peer-spy-secret payload))
         (setq test-peer-spy-visible t))
       (setq test-peer-spy-pending (1+ test-peer-spy-pending))
       (meta-log-federation--session-receive topic payload))
     1)))

(add-hook 'meta-log-federation-peer-message-functions
          (lambda (from text)
            ;; Benchmark traffic is counted, not reported line by line.
            (if (string-prefix-p "bench:" text)
                (setq test-peer-bench-count (1+ test-peer-bench-count))
              (test-peer-say "MSG %s %s" from text))
            (cond ((equal text "quit")
                   (meta-log-federation-shutdown)
                   (kill-emacs 0))
                  ((equal text "call-stats")
                   ;; The longest single module call of this Emacs, in
                   ;; wall-clock and in CPU time: NAME US CPU-NAME CPU-US.
                   (let ((stats (meta-log-federation-stats)))
                     (meta-log-federation-send-peer-message
                      from (format "call-stats:%s %d %s %d"
                                   (plist-get stats :max-call-function)
                                   (plist-get stats :max-call-us)
                                   (plist-get stats :max-call-cpu-function)
                                   (plist-get stats :max-call-cpu-us)))))
                  ((equal text "bench-count")
                   (meta-log-federation-send-peer-message
                    from (format "bench-count:%d" test-peer-bench-count)))
                  ((string-prefix-p "edit:" text)
                   ;; edit:URL|ID|FIELD|JSON-VALUE
                   (pcase-let* ((`(,url ,id ,field ,value) (split-string (substring text 5) "|"))
                                (share (cl-find url (meta-log-federation-shared-canvasl-files 'brief)
                                                :key (lambda (s) (plist-get s :url)) :test #'equal)))
                     (test-peer-edit-entry (plist-get share :path) id field value)
                     (test-peer-say "EDITED %s" id)
                     (meta-log-federation-send-peer-message from (concat "edited:" id))))
                  ((string-prefix-p "share:" text)
                   (test-peer-say "SHARED %s" (test-peer-share (substring text 6)))
                   (meta-log-federation-send-peer-message from "shared"))
                  ((string-prefix-p "echo:" text)
                   (meta-log-federation-send-peer-message
                    from (concat "echoed:" (substring text 5))))
                  ((string-prefix-p "spy:" text)
                   (setq test-peer-spy-secret "secret")
                   (test-peer-spy (substring text 4))
                   (meta-log-federation-send-peer-message from "spying")))))

(test-peer-say "INIT %.6f" (float-time))
(meta-log-federation-init (expand-file-name "blackboard.org" test-peer-dir) test-peer-broker)
(meta-log-federation-wait-until #'meta-log-federation-connected-p 20)
;; "call-stats" answers for the run from here: the start (making an
;; identity, a BIP39 seed of 2,048 PBKDF2 rounds) happens once.
(meta-log-federation--reset-max-call)
(test-peer-say "READY %s" (plist-get (meta-log-federation-get-local-peer-identity) :peer-id))
(while t
  (meta-log-federation-wait-until #'ignore 1))

;;; meta-log-federation-test-peer.el ends here
