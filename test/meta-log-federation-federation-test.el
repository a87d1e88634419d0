;;; meta-log-federation-federation-test.el --- Federation across three Emacs processes  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;;; Commentary:

;; This Emacs is one peer; others are batch Emacs processes running
;; test/meta-log-federation-test-peer.el, all on the run's private
;; mosquitto.  They report on stderr, which the tests read.

;;; Code:

(require 'meta-log-federation-test-helpers)
(require 'json)

(defvar meta-log-federation-test-peers nil
  "Peer processes started by the current test.")

(defun meta-log-federation-test-peer-dir (name)
  "Return a fresh directory for peer NAME."
  (let ((dir (expand-file-name (format "peer-%s-%s" name (random 100000000))
                               meta-log-federation-test-directory)))
    (make-directory dir t)
    dir))

(defun meta-log-federation-test-start-peer (name &optional dir)
  "Start a batch Emacs peer called NAME-N; return its process once it is ready.
N makes the name unique in the run: the broker keeps the retained
presence of earlier tests' peers, and TOFU rightly holds a known name
announced by a new key.  With DIR, restart the peer whose files are
there, under the very NAME.  The process properties `peer-id', `name'
and `dir' hold its id, name and directory."
  (let* ((name (if dir name (format "%s-%d" name (random 1000000))))
         (dir (or dir (meta-log-federation-test-peer-dir name)))
         (buffer (generate-new-buffer (format " *peer-%s*" name)))
         (proc (make-process
                :name (format "peer-%s" name) :buffer buffer :noquery t
                :command (append
                          (meta-log-federation-test-emacs-command
                           `(setq test-peer-name ,name test-peer-dir ,dir
                                  test-peer-broker ,(meta-log-federation-test-broker-url)))
                          (list "-l" (expand-file-name
                                      "meta-log-federation-test-peer.el"
                                      (file-name-directory
                                       (locate-library "meta-log-federation-test-helpers"))))))))
    (push proc meta-log-federation-test-peers)
    (process-put proc 'name name)
    (process-put proc 'dir dir)
    (let ((ready (meta-log-federation-wait-until
                  (lambda () (meta-log-federation-test-peer-line proc "READY \\([0-9a-f]+\\)"))
                  30)))
      (unless ready
        (error "Peer %s did not start: %s" name
               (with-current-buffer buffer (buffer-string))))
      (process-put proc 'peer-id ready))
    proc))

(defun meta-log-federation-test-restart-peer (proc)
  "Start the peer of the dead process PROC again, with its files; return it."
  (meta-log-federation-test-start-peer (process-get proc 'name) (process-get proc 'dir)))

(defun meta-log-federation-test-peer-line (proc regexp)
  "Return group 1 (or the whole match) of REGEXP in a report line of PROC."
  (with-current-buffer (process-buffer proc)
    (save-excursion
      (goto-char (point-min))
      (when (re-search-forward (concat "^PEER: " regexp) nil t)
        (or (match-string 1) (match-string 0))))))

(defun meta-log-federation-test-report-peers (&optional procs)
  "Print the last lines of each of PROCS' output: why a test timed out.
PROCS defaults to the current test's peers.  A failure in CI leaves only
the log, so the log must say what each peer and broker last reported."
  (dolist (proc (or procs meta-log-federation-test-peers))
    (when (buffer-live-p (process-buffer proc))
      (with-current-buffer (process-buffer proc)
        (save-excursion
          (goto-char (point-max))
          (forward-line -40)
          (message "---- last lines of %s (%s):\n%s" (process-name proc)
                   (process-status proc)
                   (buffer-substring-no-properties (point) (point-max))))))))

(defun meta-log-federation-test-stop-peers ()
  "Kill the peers of the current test."
  (dolist (p meta-log-federation-test-peers)
    (when (process-live-p p) (kill-process p))
    (when (buffer-live-p (process-buffer p)) (kill-buffer (process-buffer p))))
  (setq meta-log-federation-test-peers nil))

(defmacro meta-log-federation-test-with-federation (&rest body)
  "Run BODY with federation on in this Emacs, with files in a scratch directory."
  (declare (indent 0) (debug t))
  `(let* ((dir (meta-log-federation-test-peer-dir "self"))
          (meta-log-federation-identity-file (expand-file-name "identity.org" dir))
          (meta-log-federation-trust-file (expand-file-name "trust.json" dir))
          (meta-log-federation-sync-directory (expand-file-name "sync/" dir))
          (meta-log-federation-sync-state-directory (expand-file-name "sync-state/" dir))
          (meta-log-federation-display-name (format "tester-%d" (random 1000000)))
          (meta-log-federation-identity nil)
          (meta-log-federation-verbose nil))
     (meta-log-federation-test-ensure-broker)
     (unwind-protect
         (progn
           (should (eq t (meta-log-federation-init
                          (expand-file-name "blackboard.org" dir)
                          (meta-log-federation-test-broker-url))))
           (should (meta-log-federation-wait-until #'meta-log-federation-connected-p 10))
           ,@body)
       (meta-log-federation-test-stop-peers)
       (meta-log-federation-shutdown))))

(defun meta-log-federation-test-status (peer-id)
  "Return PEER-ID's status as this Emacs sees it."
  (plist-get (meta-log-federation-peer peer-id) :status))

(ert-deftest federation::three-peers-discover-each-other-and-see-a-killed-one-vanish ()
  (meta-log-federation-test-with-federation
    (let* ((offline nil)
           (meta-log-federation-peer-offline-functions
            (list (lambda (id reason) (push (cons id reason) offline))))
           (bob (meta-log-federation-test-start-peer "bob"))
           (carol (meta-log-federation-test-start-peer "carol"))
           (me (plist-get (meta-log-federation-get-local-peer-identity) :peer-id))
           (bob-id (process-get bob 'peer-id))
           (carol-id (process-get carol 'peer-id)))
      ;; Everyone sees everyone.
      (should (meta-log-federation-wait-until
               (lambda () (and (eq (meta-log-federation-test-status bob-id) 'online)
                               (eq (meta-log-federation-test-status carol-id) 'online)))
               20))
      (should (member bob-id (meta-log-federation-discover-peers)))
      (should (equal (plist-get (meta-log-federation-peer bob-id) :name) (process-get bob 'name)))
      (dolist (pair (list (cons bob carol-id) (cons bob me) (cons carol bob-id) (cons carol me)))
        (should (meta-log-federation-wait-until
                 (lambda () (meta-log-federation-test-peer-line
                             (car pair) (concat "ONLINE " (cdr pair))))
                 20)))
      ;; Carol dies without a goodbye: the broker's last will tells the others.
      (signal-process carol 'SIGKILL)
      (should (meta-log-federation-wait-until
               (lambda () (eq (meta-log-federation-test-status carol-id) 'offline)) 20))
      (should (equal (cdr (assoc carol-id offline)) 'vanished))
      (should (meta-log-federation-wait-until
               (lambda () (meta-log-federation-test-peer-line
                           bob (format "OFFLINE %s vanished" carol-id)))
               20))
      ;; Bob leaves cleanly when asked: a departure, not a will.
      (meta-log-federation-send-peer-message bob-id "quit")
      (should (meta-log-federation-wait-until
               (lambda () (eq (meta-log-federation-test-status bob-id) 'offline)) 20))
      (should (equal (cdr (assoc bob-id offline)) 'departed))
      ;; The blackboard records all three.
      (meta-log-federation-sync-blackboard)
      (with-temp-buffer
        (insert-file-contents meta-log-federation--blackboard)
        (dolist (id (list bob-id carol-id))
          (goto-char (point-min))
          (should (re-search-forward (format "^\\*\\*\\* Peer: %s$" id) nil t))
          (should (re-search-forward "^:PEER_STATUS: offline$" nil t)))))))

(ert-deftest federation::peer-messages-are-readable-only-by-their-recipient ()
  (meta-log-federation-test-with-federation
    (let* ((got nil)
           (meta-log-federation-peer-message-functions
            (list (lambda (from text) (push (cons from text) got))))
           (bob (meta-log-federation-test-start-peer "bob"))
           (carol (meta-log-federation-test-start-peer "carol"))
           (bob-id (process-get bob 'peer-id))
           (carol-id (process-get carol 'peer-id))
           (sniffed (generate-new-buffer " *mosquitto_sub*"))
           (sub (make-process
                 :name "sniffer" :buffer sniffed :noquery t
                 :command (list "mosquitto_sub" "-h" "127.0.0.1"
                                "-p" (number-to-string meta-log-federation-test-broker-port)
                                "-t" "canvasl/peers/+/messages" "-v"))))
      (unwind-protect
          (progn
            (should (meta-log-federation-wait-until
                     (lambda () (and (meta-log-federation-peer bob-id)
                                     (meta-log-federation-peer carol-id)))
                     20))
            ;; Carol listens on Bob's topic as a plain MQTT subscriber.
            (meta-log-federation-send-peer-message carol-id (format "spy:%s" bob-id))
            (should (meta-log-federation-wait-until
                     (lambda () (equal (cdr (assoc carol-id got)) "spying")) 20))
            (meta-log-federation-send-peer-message bob-id "echo:secret-42")
            (should (meta-log-federation-wait-until
                     (lambda () (equal (cdr (assoc bob-id got)) "echoed:secret-42")) 20))
            (should (equal (meta-log-federation-wait-until
                            (lambda () (meta-log-federation-test-peer-line
                                        bob "MSG [0-9a-f]+ \\(.*\\)"))
                            10)
                           "echo:secret-42"))
            ;; Carol saw the event pass but could not read it.
            (should (meta-log-federation-wait-until
                     (lambda () (meta-log-federation-test-peer-line carol "RAW \\(.*\\)"))
                     20))
            (should (equal (meta-log-federation-test-peer-line carol "RAW \\(.*\\)")
                           "dropped not-for-us opaque"))
            (should-not (meta-log-federation-test-peer-line carol "RAW .*plaintext-visible"))
            ;; A plain mosquitto_sub saw the events, and no plaintext.
            (should (meta-log-federation-wait-until
                     (lambda () (with-current-buffer sniffed
                                  (string-search (format "canvasl/peers/%s/messages" bob-id)
                                                 (buffer-string))))
                     10))
            (with-current-buffer sniffed
              (should (string-search "\"kind\":4770" (buffer-string)))
              (should-not (string-search "secret-42" (buffer-string)))
              (should-not (string-search "spying" (buffer-string)))))
        (delete-process sub)
        (kill-buffer sniffed)))))

(defun meta-log-federation-test-counted (reason before)
  "Return non-nil once the drop count of REASON exceeds BEFORE."
  (> (meta-log-federation-drop-count reason) before))

(ert-deftest federation::forged-replayed-oversized-and-untrusted-messages-are-dropped ()
  (meta-log-federation-test-with-federation
    (let* ((got nil)
           (meta-log-federation-peer-message-functions
            (list (lambda (from text) (push (cons from text) got))))
           (me (plist-get (meta-log-federation-get-local-peer-identity) :peer-id))
           (captured nil)
           (bob (meta-log-federation-test-start-peer "bob"))
           (bob-id (process-get bob 'peer-id))
           (mallory (meta-log-federation-identity-from-mnemonic
                     (meta-log-federation-mnemonic-generate)))
           (presence (lambda (status)
                       (meta-log-federation-sign-event
                        mallory 20770
                        (json-encode
                         `((peer_id . ,(meta-log-federation-identity-peer-id mallory))
                           (name . "mallory") (software . "x/1") (protocol . ,(meta-log-federation--protocol-version))
                           (capabilities . []) (status . ,status)
                           (since . ,(truncate (float-time)))))
                        `(("v" ,(meta-log-federation--protocol-version)) ("t" "announce"))))))
      ;; Capture the raw events that reach our message topic.
      (meta-log-federation-mqtt-subscribe
       (format "canvasl/peers/%s/messages" me)
       (lambda (_topic payload) (push payload captured)) 1)
      (should (meta-log-federation-wait-until
               (lambda () (meta-log-federation-peer bob-id)) 20))
      (meta-log-federation-send-peer-message bob-id "echo:one")
      (should (meta-log-federation-wait-until
               (lambda () (assoc bob-id got)) 20))
      (should (= (length got) 1))
      ;; Replay: the same event published again is dropped, no handler runs.
      (let ((before (meta-log-federation-drop-count "replay")))
        (meta-log-federation-mqtt-publish (format "canvasl/peers/%s/messages" me)
                                          (car captured) 1)
        (should (meta-log-federation-wait-until
                 (lambda () (meta-log-federation-test-counted "replay" before)) 10))
        (should (= (length got) 1)))
      ;; Forged: Bob's event with the content swapped keeps Bob's signature,
      ;; which no longer matches.
      (let* ((event (json-parse-string (car captured) :object-type 'alist))
             (before (+ (meta-log-federation-drop-count "bad-signature")
                        (meta-log-federation-drop-count "id-mismatch"))))
        (setf (alist-get 'content event) "Zm9yZ2Vk")
        (meta-log-federation-mqtt-publish (format "canvasl/peers/%s/messages" me)
                                          (json-encode event) 1)
        (should (meta-log-federation-wait-until
                 (lambda () (> (+ (meta-log-federation-drop-count "bad-signature")
                                  (meta-log-federation-drop-count "id-mismatch"))
                               before))
                 10)))
      ;; A valid signature from a key that is not the one the event names.
      (let* ((real (json-parse-string (funcall presence "online") :object-type 'alist))
             (before (meta-log-federation-drop-count "bad-signature")))
        (setf (alist-get 'sig real)
              (alist-get 'sig (json-parse-string (funcall presence "offline")
                                                 :object-type 'alist)))
        (meta-log-federation-mqtt-publish "canvasl/peers/announce" (json-encode real) 1)
        (should (meta-log-federation-wait-until
                 (lambda () (meta-log-federation-test-counted "bad-signature" before)) 10)))
      ;; Oversized: refused at send time, dropped at receive time.
      (should-error (meta-log-federation-send-peer-message bob-id (make-string 70000 ?x))
                    :type 'meta-log-federation-too-large)
      (let ((before (meta-log-federation-drop-count "too-large")))
        (meta-log-federation-mqtt-publish "canvasl/sync" (make-string 70000 ?x) 1)
        (should (meta-log-federation-wait-until
                 (lambda () (meta-log-federation-test-counted "too-large" before)) 10)))
      ;; Untrusted: under the allowlist policy a stranger's presence is dropped.
      (let ((meta-log-federation-trust-policy 'allowlist)
            (before (meta-log-federation-drop-count "untrusted")))
        (meta-log-federation--federation-set-policy 'allowlist)
        (meta-log-federation-mqtt-publish "canvasl/peers/announce" (funcall presence "online") 1)
        (should (meta-log-federation-wait-until
                 (lambda () (meta-log-federation-test-counted "untrusted" before)) 10))
        (should-not (meta-log-federation-peer (meta-log-federation-identity-peer-id mallory)))
        ;; Trusting it lets its next presence in.
        (meta-log-federation-trust-peer (meta-log-federation-identity-peer-id mallory))
        (meta-log-federation-mqtt-publish "canvasl/peers/announce" (funcall presence "online") 1)
        (should (meta-log-federation-wait-until
                 (lambda () (meta-log-federation-peer (meta-log-federation-identity-peer-id mallory)))
                 10))
        (meta-log-federation--federation-set-policy 'tofu))
      ;; Blocked: nothing from Bob reaches a handler any more.
      (meta-log-federation-block-peer bob-id)
      (let ((before (meta-log-federation-drop-count "blocked")))
        (meta-log-federation-send-peer-message bob-id "echo:two")
        (should (meta-log-federation-wait-until
                 (lambda () (meta-log-federation-test-counted "blocked" before)) 10))
        (should (= (length got) 1)))
      ;; The trust decisions were saved.
      (with-temp-buffer
        (insert-file-contents meta-log-federation-trust-file)
        (should (string-search bob-id (buffer-string)))
        (should (string-search "blocked" (buffer-string))))
      (let ((c (meta-log-federation-counters)))
        (should (> (plist-get c :dropped) 4))
        (should (>= (plist-get c :messages-received) 1))))))

(ert-deftest federation::init-twice-changes-nothing-and-prototype-names-work ()
  (meta-log-federation-test-with-federation
    (let ((id (plist-get (meta-log-federation-get-local-peer-identity) :peer-id)))
      (should (null (meta-log-federation-init)))
      (should (equal id (plist-get (meta-log-federation-get-local-peer-identity) :peer-id)))
      (should (stringp (meta-log-federation-announce-peer)))
      (should (stringp (meta-log-federation-announce-peer id)))
      (should-error (meta-log-federation-announce-peer (make-string 64 ?a))
                    :type 'meta-log-federation-error)
      (should-error (meta-log-federation-connect-to-peer (make-string 64 ?b))
                    :type 'meta-log-federation-unknown-peer)
      (should-error (meta-log-federation-connect-to-peer nil)
                    :type 'meta-log-federation-unknown-peer)
      (should-error (meta-log-federation-send-peer-message "../peers" "x")
                    :type 'meta-log-federation-unknown-peer)
      (should-error (meta-log-federation-send-peer-message (make-string 64 ?b) "x")
                    :type 'meta-log-federation-unknown-peer)
      (let* ((announced nil)
             (received nil)
             (meta-log-mqtt-peer-announced-hook
              (list (lambda (peer key address) (push (list peer key address) announced))))
             (meta-log-mqtt-message-received-hook
              (list (lambda (topic message) (push (cons topic message) received))))
             (bob (meta-log-federation-test-start-peer "bob"))
             (bob-id (process-get bob 'peer-id)))
        (should (meta-log-federation-wait-until (lambda () (assoc bob-id announced)) 20))
        (should (equal (cadr (assoc bob-id announced)) bob-id))
        (should (equal (nth 2 (assoc bob-id announced))
                       (format "canvasl/peers/%s/messages" bob-id)))
        (should (eq (plist-get (meta-log-federation-connect-to-peer bob-id) :status) 'online))
        (meta-log-federation-send-peer-message bob-id "echo:hook")
        (should (meta-log-federation-wait-until
                 (lambda () (rassoc "echoed:hook" received)) 20))
        (with-temp-buffer
          (should (buffer-live-p (meta-log-federation-list-peers)))
          (with-current-buffer "*meta-log-federation peers*"
            (should (string-search "bob" (buffer-string)))))
        (should (string-match-p "Fed\\[[0-9]+\\]" (meta-log-federation-mode-line-string)))))))

(ert-deftest federation::blackboard-update-keeps-the-users-unsaved-edits-and-point ()
  (let* ((dir (meta-log-federation-test-peer-dir "bb"))
         (file (meta-log-federation-create-blackboard (expand-file-name "bb.org" dir)))
         (buffer (find-file-noselect file))
         (peer (list :peer-id (make-string 64 ?c) :name "carol" :status 'online
                     :last-seen 1767225600 :trust 'pinned :address "canvasl/peers/c/messages")))
    (unwind-protect
        (with-current-buffer buffer
          (goto-char (point-max))
          (insert "* My notes\nhalf-written")
          (let ((pt (point-marker)))
            (meta-log-federation--write-blackboard file (list peer))
            (should (= (point) pt))
            (should (= (point) (point-max)))
            (should (equal (buffer-substring (line-beginning-position) (point)) "half-written"))
            (should (buffer-modified-p))
            ;; Not saved over the user's edit: the file does not have the note yet.
            (with-temp-buffer
              (insert-file-contents file)
              (should-not (string-search "half-written" (buffer-string))))
            (should (string-search (format "*** Peer: %s" (make-string 64 ?c)) (buffer-string)))
            ;; The peer went under "Peers", not at the end of the file.
            (should (< (string-search "*** Peer:" (buffer-string))
                       (string-search "** CanvasL State" (buffer-string))))
            ;; A second update changes only what changed.
            (meta-log-federation--write-blackboard
             file (list (plist-put (copy-sequence peer) :status 'offline)))
            (should (string-search ":PEER_STATUS: offline" (buffer-string)))
            (should (= 1 (how-many "^\\*\\*\\* Peer:" (point-min) (point-max))))
            (should (= (point) pt))))
      (with-current-buffer buffer (set-buffer-modified-p nil))
      (kill-buffer buffer))))

;; The timer's blackboard update (`meta-log-federation--blackboard-now')
;; binds `meta-log-federation--blackboard-write-queued': the file is
;; written by federation's worker, not by Emacs.

(defun meta-log-federation-test-blackboard-peer (char)
  "A peer plist with an id of 64 CHARs (a hex digit), for blackboard updates."
  (list :peer-id (make-string 64 char) :name (string char) :status 'online
        :last-seen 1767225600 :trust 'pinned :address "canvasl/peers/x/messages"))

(ert-deftest federation::the-timers-blackboard-update-is-written-by-the-worker-in-order ()
  (meta-log-federation-test-with-federation
    (let* ((file (meta-log-federation-create-blackboard
                  (expand-file-name "bb.org" (make-temp-file "mlf-bb-queued-" t))))
           (d (meta-log-federation-test-blackboard-peer ?d))
           (e (meta-log-federation-test-blackboard-peer ?e)))
      (let ((meta-log-federation--blackboard-write-queued t))
        (meta-log-federation--write-blackboard file (list d))
        ;; Handed to the worker: waiting for its report, which only a
        ;; dispatch of events (none yet) can take in.
        (should (string-search (make-string 64 ?d)
                               (cdr (gethash file meta-log-federation--blackboard-queued))))
        ;; The next update starts from that text, whether or not the file
        ;; holds it yet: a note only that text has (never the file) is in
        ;; what the next update hands over.
        (let ((queued (gethash file meta-log-federation--blackboard-queued)))
          (setcdr queued (concat (cdr queued) "* Only in the text handed over\n")))
        (meta-log-federation--write-blackboard file (list e))
        (let ((text (cdr (gethash file meta-log-federation--blackboard-queued))))
          (should (string-search "Only in the text handed over" text))
          (should (string-search (make-string 64 ?d) text))
          (should (string-search (make-string 64 ?e) text))))
      ;; The worker's report of the last write ends the wait; the file holds both.
      (should (meta-log-federation-wait-until
               (lambda () (null (gethash file meta-log-federation--blackboard-queued))) 10))
      (let ((text (meta-log-federation-test-file-string file)))
        (should (string-search (make-string 64 ?d) text))
        (should (string-search (make-string 64 ?e) text)))
      ;; An update a caller asks for is on disk when it returns.
      (meta-log-federation--write-blackboard
       file (list (plist-put (copy-sequence d) :status 'offline)))
      (should (string-search ":PEER_STATUS: offline" (meta-log-federation-test-file-string file))))))

(ert-deftest federation::a-blackboard-the-worker-cannot-write-is-said-once-and-written-later ()
  (meta-log-federation-test-with-federation
    (let* ((dir (make-temp-file "mlf-bb-frozen-" t))
           (file (meta-log-federation-create-blackboard (expand-file-name "bb.org" dir)))
           (before (meta-log-federation-test-file-string file)))
      (unless (meta-log-federation-test-freeze-directory dir t)
        (ert-skip meta-log-federation-test-cannot-freeze))
      (unwind-protect
          (progn
            (when (get-buffer "*Warnings*")
              (kill-buffer "*Warnings*"))
            (let ((meta-log-federation--blackboard-write-queued t))
              (meta-log-federation--write-blackboard
               file (list (meta-log-federation-test-blackboard-peer ?a)))
              (meta-log-federation--write-blackboard
               file (list (meta-log-federation-test-blackboard-peer ?b))))
            (should (meta-log-federation-wait-until
                     (lambda () (null (gethash file meta-log-federation--blackboard-queued))) 10))
            ;; Two failed writes, one warning that says what to check.
            (should (get-buffer "*Warnings*"))
            (with-current-buffer "*Warnings*"
              (should (= 1 (how-many "cannot be written" (point-min) (point-max))))
              (should (string-search "permissions" (buffer-string))))
            (should (equal before (meta-log-federation-test-file-string file))))
        (meta-log-federation-test-freeze-directory dir nil))
      ;; Once the directory is writable, the next update is written.
      (let ((meta-log-federation--blackboard-write-queued t))
        (meta-log-federation--write-blackboard
         file (list (meta-log-federation-test-blackboard-peer ?9))))
      (should (meta-log-federation-wait-until
               (lambda () (string-search (make-string 64 ?9)
                                         (meta-log-federation-test-file-string file)))
               10))
      (should-not meta-log-federation--blackboard-write-failed))))

(ert-deftest federation::a-newcomer-learns-150-retained-presences-at-once ()
  (meta-log-federation-test-with-federation
    (let ((ids nil))
      ;; 150 peers that announced themselves and are still online: their
      ;; signed presences wait, retained, each on its own topic.
      (dotimes (i 150)
        (let* ((identity (meta-log-federation-identity-from-mnemonic
                          (meta-log-federation-mnemonic-generate)))
               (id (meta-log-federation-identity-peer-id identity)))
          (push id ids)
          (meta-log-federation-mqtt-publish
           (format "canvasl/peers/%s/presence" id)
           (meta-log-federation-sign-event
            identity 20770
            (json-encode `((peer_id . ,id) (name . ,(format "crowd-%d-%d" i (random 1000000)))
                           (software . "x/1") (protocol . ,(meta-log-federation--protocol-version)) (capabilities . [])
                           (status . "online") (since . ,(truncate (float-time)))))
            `(("v" ,(meta-log-federation--protocol-version)) ("t" "presence")))
           1 t)))
      (let ((newcomer (meta-log-federation-test-start-peer "newcomer")))
        (should (meta-log-federation-wait-until
                 (lambda () (cl-every (lambda (id) (meta-log-federation-test-peer-line
                                                    newcomer (concat "ONLINE " id)))
                                      ids))
                 30)))
      ;; Clear the retained presences for the tests that follow.
      (dolist (id ids)
        (meta-log-federation-mqtt-publish (format "canvasl/peers/%s/presence" id) "" 1 t)))))

(ert-deftest federation::environment-configures-but-batch-starts-nothing ()
  "In batch Emacs, META_LOG_ENABLE_FEDERATION=1 starts no peer; init uses the environment.
A batch Emacs run in a peer's environment (the Docker image's check)
must not become a second peer.  `meta-log-federation-init' then takes
the broker, blackboard and identity file from the META_LOG_* variables.
That the variable starts federation in a daemon is checked by
bin/check-docker, in `make test'."
  (meta-log-federation-test-ensure-broker)
  (let* ((dir (meta-log-federation-test-peer-dir "env"))
         (blackboard (expand-file-name "env-blackboard.org" dir))
         (identity (expand-file-name "id.org" dir))
         (process-environment
          (append (list "META_LOG_ENABLE_FEDERATION=1"
                        (concat "META_LOG_MQTT_BROKER=" (meta-log-federation-test-broker-url))
                        (concat "META_LOG_FEDERATION_BLACKBOARD=" blackboard)
                        (concat "META_LOG_IDENTITY_FILE=" identity))
                  process-environment))
         (out (generate-new-buffer " *env-peer*")))
    (unwind-protect
        (let ((status (apply #'call-process
                             (car (meta-log-federation-test-emacs-command)) nil out nil
                             (cdr (meta-log-federation-test-emacs-command
                                   `(setq user-emacs-directory ,(file-name-as-directory dir))
                                   '(require 'meta-log-federation)
                                   '(princ (format "after-load running=%s identity-exists=%s\n"
                                                   (meta-log-federation-running-p)
                                                   (file-exists-p meta-log-federation-identity-file)))
                                   '(meta-log-federation-init)
                                   '(princ (format "connected=%s\n"
                                                   (meta-log-federation-wait-until
                                                    #'meta-log-federation-connected-p 10)))
                                   '(kill-emacs 0))))))
          (should (eq status 0))
          (with-current-buffer out
            (should (string-search "after-load running=nil identity-exists=nil" (buffer-string)))
            (should (string-search "connected=t" (buffer-string))))
          (should (file-exists-p blackboard))
          (should (file-exists-p identity)))
      (kill-buffer out))))

(provide 'meta-log-federation-federation-test)
;;; meta-log-federation-federation-test.el ends here
