;;; meta-log-federation-delivery-test.el --- Messages reach peers that were away, across broker restarts and bridges  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;;; Commentary:

;; Each test runs its own mosquitto (with persistence in a scratch
;; directory, or two of them joined by mosquitto's bridge) and batch
;; Emacs peers running test/meta-log-federation-test-peer.el with
;; test/meta-log-federation-delivery-peer.el, which reports connections,
;; receipts and stream counts on stderr.
;;
;; The senders' timed resends are pushed out of reach
;; (`meta-log-federation-outbox-resend-delay' one hour), so these tests
;; show what the persistent session, the broker's persistence and the
;; resends after a reconnection (the sender's own, and the one to a peer
;; that announces a new session) achieve by themselves; the timed
;; resends are covered by the Rust tests of src/federation/node.rs.
;; mosquitto saves its state at most every two seconds here: a kill -9
;; soon after a peer subscribed loses its session (the first run of the
;; 2,000-message stream can hit that), and then only the resend to the
;; peer's new session brings what waited for it.

;;; Code:

(require 'meta-log-federation-federation-test)
(require 'meta-log-federation-sync-test)

(defun delivery-test--mosquitto-program ()
  "Return mosquitto's executable, or skip the test saying why."
  (or (executable-find "mosquitto")
      (cl-find-if #'file-executable-p '("/usr/sbin/mosquitto" "/usr/local/sbin/mosquitto"))
      (ert-skip "mosquitto is not installed (apt-get install mosquitto mosquitto-clients)")))

(defun delivery-test--broker-config (name port &rest lines)
  "Write the config NAME of a mosquitto on PORT with persistence; return its file.
LINES are added at the end.  The persistence directory is NAME-db/
in the run's scratch directory, writable by the mosquitto user."
  (let* ((dir meta-log-federation-test-directory)
         (db (expand-file-name (format "%s-db/" name) dir))
         (conf (expand-file-name (format "%s.conf" name) dir)))
    (make-directory db t)
    (set-file-modes db #o777)
    (with-temp-file conf
      (insert (format "listener %d 127.0.0.1\nallow_anonymous true\n" port)
              (format "persistence true\npersistence_location %s\n" db)
              ;; Save the in-memory state every second, so a kill -9 loses at
              ;; most the last second (the sessions were saved long before).
              "autosave_interval 1\n"
              "max_queued_messages 100000\nlog_dest stderr\n")
      (dolist (l lines) (insert l "\n")))
    (set-file-modes conf #o644)
    conf))

(defun delivery-test--start-broker (conf port)
  "Start mosquitto with CONF and wait until it listens on PORT; return it."
  (let* ((buffer (get-buffer-create (format " *delivery-mosquitto-%d*" port)))
         (proc (make-process :name (format "delivery-mosquitto-%d" port)
                             :buffer buffer :noquery t
                             :command (list (delivery-test--mosquitto-program) "-c" conf))))
    (unless (meta-log-federation-wait-until
             (lambda () (meta-log-federation-test-port-open-p port)) 10)
      (error "Mosquitto did not start on port %d: %s" port
             (with-current-buffer buffer (buffer-string))))
    proc))

(defun delivery-test--kill (proc)
  "Kill PROC with SIGKILL and wait until it is gone."
  (when (process-live-p proc)
    (signal-process proc 'SIGKILL)
    (meta-log-federation-wait-until (lambda () (not (process-live-p proc))) 5)))

(defmacro delivery-test--with-broker (spec &rest body)
  "Run BODY with a private persistent mosquitto as the test broker.
SPEC is (CONF-VAR NAME): CONF-VAR is bound to the config file, NAME
names its files.  The broker is `meta-log-federation-test-broker-process'
and its port `meta-log-federation-test-broker-port' within BODY."
  (declare (indent 1) (debug t))
  (let ((conf (car spec)) (name (cadr spec)))
    `(let* ((meta-log-federation-test-broker-port (meta-log-federation-test-free-port))
            (,conf (delivery-test--broker-config
                    (format "%s-%d" ,name meta-log-federation-test-broker-port)
                    meta-log-federation-test-broker-port))
            (meta-log-federation-test-broker-process
             (delivery-test--start-broker ,conf meta-log-federation-test-broker-port)))
       (unwind-protect (progn ,@body)
         (meta-log-federation-test-stop-peers)
         (ignore-errors (meta-log-federation-shutdown))
         (delivery-test--kill meta-log-federation-test-broker-process)))))

(defun delivery-test--start-peer (name &optional dir broker-url forms)
  "Start a batch Emacs peer NAME on BROKER-URL; return it once it is ready.
NAME is made unique in the run.  BROKER-URL defaults to the test
broker's.  With DIR, restart the peer
whose files are there, under the very NAME.  FORMS are extra variable
and value pairs to set before the package loads.  Timed resends wait an
hour (see the Commentary)."
  (let* ((name (if dir name (format "%s-%d" name (random 1000000))))
         (dir (or dir (meta-log-federation-test-peer-dir name)))
         (url (or broker-url (meta-log-federation-test-broker-url)))
         (buffer (generate-new-buffer (format " *peer-%s*" name)))
         (test-dir (file-name-directory (locate-library "meta-log-federation-test-helpers")))
         (proc (make-process
                :name (format "peer-%s" name) :buffer buffer :noquery t
                :command (append
                          (meta-log-federation-test-emacs-command
                           `(setq test-peer-name ,name test-peer-dir ,dir
                                  test-peer-broker ,url
                                  meta-log-federation-delivery-directory
                                  ,(expand-file-name "delivery/" dir)
                                  meta-log-federation-outbox-resend-delay 3600
                                  ,@forms))
                          (list "-l" (expand-file-name "meta-log-federation-delivery-peer.el" test-dir)
                                "-l" (expand-file-name "meta-log-federation-test-peer.el" test-dir))))))
    (push proc meta-log-federation-test-peers)
    (process-put proc 'name name)
    (process-put proc 'dir dir)
    (process-put proc 'url url)
    (let ((ready (meta-log-federation-wait-until
                  (lambda () (meta-log-federation-test-peer-line proc "READY \\([0-9a-f]+\\)"))
                  30)))
      (unless ready
        (error "Peer %s did not start: %s" name (with-current-buffer buffer (buffer-string))))
      (process-put proc 'peer-id ready))
    proc))

(defun delivery-test--restart-peer (proc)
  "Start the peer of the dead process PROC again with its files and broker."
  (delivery-test--start-peer (process-get proc 'name) (process-get proc 'dir)
                             (process-get proc 'url)))

(defun delivery-test--last (proc regexp)
  "Return the match data groups of the last report line of PROC matching REGEXP.
A list of strings (group 1, 2, ...), or nil."
  (with-current-buffer (process-buffer proc)
    (save-excursion
      (goto-char (point-max))
      (when (re-search-backward (concat "^PEER: " regexp) nil t)
        (cl-loop for i from 1 while (match-beginning i) collect (match-string i))))))

(defun delivery-test--status (proc)
  "Return PROC's last STATUS as (TOTAL DISTINCT DELIVERED FAILED SENT REPLAYS).
Zeros before the first report."
  (or (mapcar #'string-to-number
              (delivery-test--last
               proc (concat "STATUS" (apply #'concat (make-list 6 " \\([0-9]+\\)")))))
      (list 0 0 0 0 0 0)))

(defun delivery-test--connects (proc)
  "Return how many times PROC has connected to its broker."
  (string-to-number (or (car (delivery-test--last proc "CONNECTED \\([0-9]+\\)")) "0")))

(defun delivery-test--count-lines (proc regexp)
  "Return how many report lines of PROC match REGEXP."
  (with-current-buffer (process-buffer proc)
    (save-excursion
      (goto-char (point-min))
      (cl-loop while (re-search-forward (concat "^PEER: " regexp) nil t) count t))))

(defmacro delivery-test--as-peer (&rest body)
  "Run BODY with federation on in this Emacs, on the test broker.
Files go to a scratch directory; timed resends wait an hour."
  (declare (indent 0) (debug t))
  `(let* ((dir (meta-log-federation-test-peer-dir "self"))
          (meta-log-federation-identity-file (expand-file-name "identity.org" dir))
          (meta-log-federation-trust-file (expand-file-name "trust.json" dir))
          (meta-log-federation-sync-directory (expand-file-name "sync/" dir))
          (meta-log-federation-sync-state-directory (expand-file-name "sync-state/" dir))
          (meta-log-federation-delivery-directory (expand-file-name "delivery/" dir))
          (meta-log-federation-outbox-resend-delay 3600)
          (meta-log-federation-display-name (format "tester-%d" (random 1000000)))
          (meta-log-federation-identity nil)
          (meta-log-federation-verbose nil))
     (should (eq t (meta-log-federation-init (expand-file-name "blackboard.org" dir)
                                             (meta-log-federation-test-broker-url))))
     (should (meta-log-federation-wait-until #'meta-log-federation-connected-p 10))
     ,@body))

(defun delivery-test--away ()
  "Send 50 messages to a peer while it is shut down; check each arrives once.
Runs on the test broker of the caller."
  (delivery-test--as-peer
    (let* ((delivered nil)
           (failed nil)
           (meta-log-federation-peer-message-delivered-functions
            (list (lambda (id peer) (push (cons id peer) delivered))))
           (meta-log-federation-peer-message-failed-functions
            (list (lambda (id _peer reason) (push (cons id reason) failed))))
           (bob (delivery-test--start-peer "bob"))
           (bob-id (process-get bob 'peer-id))
           (me (plist-get (meta-log-federation-get-local-peer-identity) :peer-id))
           (ids nil))
      (should (meta-log-federation-wait-until
               (lambda () (eq (meta-log-federation-test-status bob-id) 'online)) 20))
      ;; Bob shuts down cleanly (departure, clean MQTT disconnect), after
      ;; acknowledging the very message that told it to.
      (let ((quit (meta-log-federation-send-peer-message bob-id "quit")))
        (should (meta-log-federation-wait-until (lambda () (not (process-live-p bob))) 20))
        (should (meta-log-federation-wait-until (lambda () (assoc quit delivered)) 10))
        (setq delivered nil))
      (should (meta-log-federation-wait-until
               (lambda () (eq (meta-log-federation-test-status bob-id) 'offline)) 20))
      (dotimes (i 50)
        (push (meta-log-federation-send-peer-message bob-id (format "away-%02d" i)) ids))
      (should (= 50 (length (meta-log-federation-outbox))))
      (should (eq 'sent (meta-log-federation-peer-message-state (car ids))))
      ;; Give the messages time to reach the broker while Bob is away.
      (meta-log-federation-wait-until #'ignore 1)
      (should-not delivered)
      (let ((bob2 (delivery-test--restart-peer bob)))
        (should (meta-log-federation-wait-until (lambda () (= 50 (length delivered))) 30))
        ;; Every one arrived, exactly once.
        (dotimes (i 50)
          (should (= 1 (delivery-test--count-lines bob2 (format "MSG %s away-%02d$" me i)))))
        (should (= 50 (delivery-test--count-lines bob2 "MSG [0-9a-f]+ away-")))
        (should (equal (sort (mapcar #'car delivered) #'string<) (sort (copy-sequence ids) #'string<)))
        (should (cl-every (lambda (d) (equal (cdr d) bob-id)) delivered))
        (should-not failed)
        (should-not (meta-log-federation-outbox))
        (should (eq 'delivered (meta-log-federation-peer-message-state (car ids))))
        (should (equal "51 delivered" (meta-log-federation-outbox-peer-summary bob-id)))))))

(ert-deftest delivery::fifty-messages-to-a-peer-that-was-away-arrive-once-and-are-delivered ()
  (delivery-test--with-broker (conf "away")
    (delivery-test--away)))

(ert-deftest delivery::the-embedded-broker-keeps-messages-for-a-peer-that-was-away ()
  ;; rumqttd keeps persistent sessions in memory while it runs (not on disk).
  (unless (meta-log-federation--broker-program)
    (ert-skip "the embedded broker is not built: run `make broker'"))
  (let ((meta-log-federation-test-broker-port (meta-log-federation-test-free-port))
        (meta-log-federation-test-broker-process nil))
    (meta-log-federation-test-embedded-broker-start meta-log-federation-test-broker-port)
    (unwind-protect (delivery-test--away)
      (meta-log-federation-test-stop-peers)
      (ignore-errors (meta-log-federation-shutdown))
      (delivery-test--kill meta-log-federation-test-broker-process))))

(ert-deftest delivery::a-peer-whose-broker-lost-its-session-gets-what-waited-for-it ()
  ;; A broker without persistence: its restart loses every session and
  ;; every message it kept, as a kill -9 loses the last second or two of a
  ;; persistent one.  Timed resends wait an hour here: only the resend
  ;; when Bob announces his new session can bring the messages.
  (let* ((meta-log-federation-test-broker-port (meta-log-federation-test-free-port))
         (conf (expand-file-name (format "forgetful-%d.conf" meta-log-federation-test-broker-port)
                                 meta-log-federation-test-directory))
         (meta-log-federation-test-broker-process nil))
    (with-temp-file conf
      (insert (format "listener %d 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n"
                      meta-log-federation-test-broker-port)))
    (set-file-modes conf #o644)
    (setq meta-log-federation-test-broker-process
          (delivery-test--start-broker conf meta-log-federation-test-broker-port))
    (unwind-protect
        (delivery-test--as-peer
          (let* ((delivered nil)
                 (meta-log-federation-peer-message-delivered-functions
                  (list (lambda (id _peer) (push id delivered))))
                 (bob (delivery-test--start-peer "bob"))
                 (bob-id (process-get bob 'peer-id))
                 (me (plist-get (meta-log-federation-get-local-peer-identity) :peer-id))
                 (ids nil))
            (should (meta-log-federation-wait-until
                     (lambda () (eq (meta-log-federation-test-status bob-id) 'online)) 20))
            (let ((connects (delivery-test--connects bob)))
              ;; The broker dies with Bob stopped; 20 messages go out meanwhile
              ;; and reach the new broker before Bob does: nobody to keep them for.
              (delivery-test--kill meta-log-federation-test-broker-process)
              (signal-process bob 'SIGSTOP)
              (unwind-protect
                  (progn
                    (dotimes (i 20)
                      (push (meta-log-federation-send-peer-message bob-id (format "lost-%02d" i))
                            ids))
                    (setq meta-log-federation-test-broker-process
                          (delivery-test--start-broker conf meta-log-federation-test-broker-port))
                    (should (meta-log-federation-wait-until #'meta-log-federation-connected-p 30))
                    ;; Our resend at reconnection has gone to nobody by now.
                    (meta-log-federation-wait-until #'ignore 1)
                    (should-not delivered))
                (signal-process bob 'SIGCONT))
              (should (meta-log-federation-wait-until
                       (lambda () (> (delivery-test--connects bob) connects)) 30)))
            ;; Bob's new session: what waits for him is sent again, and arrives once.
            (should (meta-log-federation-wait-until (lambda () (= 20 (length delivered))) 30))
            (should (equal (sort (copy-sequence delivered) #'string<)
                           (sort (copy-sequence ids) #'string<)))
            (dotimes (i 20)
              (should (= 1 (delivery-test--count-lines bob (format "MSG %s lost-%02d$" me i)))))
            (should-not (meta-log-federation-outbox))))
      (meta-log-federation-test-stop-peers)
      (ignore-errors (meta-log-federation-shutdown))
      (delivery-test--kill meta-log-federation-test-broker-process))))

(defun delivery-test--stream-run (conf first)
  "Stream 2,000 messages across a kill -9 of the broker started from CONF.
FIRST says which peer reconnects first: `sender' (the receiver is
stopped while the broker restarts) or `receiver' (the sender is)."
  (let* ((bob (delivery-test--start-peer "bob"))
         (bob-id (process-get bob 'peer-id))
         (alice (delivery-test--start-peer "alice" nil nil
                                           `(delivery-peer-stream '(,bob-id 2000))))
         (late (if (eq first 'sender) bob alice))
         (early (if (eq first 'sender) alice bob)))
    (unwind-protect
        (progn
          (should (meta-log-federation-wait-until
                   (lambda () (>= (nth 1 (delivery-test--status bob)) 500)) 60))
          (delivery-test--kill meta-log-federation-test-broker-process)
          (signal-process late 'SIGSTOP)
          ;; The broker died in the middle of the stream.
          (should (< (nth 1 (delivery-test--status bob)) 2000))
          (let ((early-connects (delivery-test--connects early)))
            (meta-log-federation-wait-until #'ignore 2)
            (setq meta-log-federation-test-broker-process
                  (delivery-test--start-broker conf meta-log-federation-test-broker-port))
            (should (meta-log-federation-wait-until
                     (lambda () (> (delivery-test--connects early) early-connects)) 30))
            ;; Let the early one work a while alone (the sender streams on).
            (meta-log-federation-wait-until #'ignore 2))
          (signal-process late 'SIGCONT)
          ;; Every message handled by Bob and acknowledged to Alice (the
          ;; time limit only stops a broken build from hanging the run).
          (unless (meta-log-federation-wait-until
                   (lambda () (and (= 2000 (nth 1 (delivery-test--status bob)))
                                   (= 2000 (nth 2 (delivery-test--status alice)))))
                   300)
            (meta-log-federation-test-report-peers (list alice bob meta-log-federation-test-broker-process)))
          (should (equal (list :handled (nth 1 (delivery-test--status bob))
                               :delivered (nth 2 (delivery-test--status alice)))
                         (list :handled 2000 :delivered 2000)))
          ;; A moment for late duplicates to show if the handlers saw any.
          (meta-log-federation-wait-until #'ignore 2)
          (pcase-let ((`(,total ,distinct ,_ ,_ ,_ ,replays) (delivery-test--status bob))
                      (`(,_ ,_ ,delivered ,failed ,sent ,_) (delivery-test--status alice)))
            (message "stream, %s reconnecting first: %d of 2000 handled once, %d duplicates dropped; longest module call: sender %s, receiver %s"
                     first distinct replays
                     (delivery-test--last alice "MAXCALL \\(.*\\)")
                     (delivery-test--last bob "MAXCALL \\(.*\\)"))
            (should (= sent 2000))
            (should (= distinct 2000))
            (should (= total 2000))
            (should (= delivered 2000))
            (should (= failed 0))))
      (when (process-live-p late) (signal-process late 'SIGCONT))
      (meta-log-federation-test-stop-peers))))

(ert-deftest delivery::a-2000-message-stream-survives-kill-9-of-the-broker-every-run ()
  (delivery-test--with-broker (conf "restart")
    (dolist (first '(sender receiver sender))
      (ert-info ((format "run where the %s reconnects first" first))
        (delivery-test--stream-run conf first)))))

(ert-deftest delivery::peers-on-bridged-brokers-meet-message-with-receipts-and-sync ()
  (delivery-test--with-broker (conf "hub")
    (let* ((hub-port meta-log-federation-test-broker-port)
           (edge-port (meta-log-federation-test-free-port))
           (edge (delivery-test--start-broker
                  (delivery-test--broker-config
                   (format "edge-%d" edge-port) edge-port
                   ;; The bridge the guide documents: every federation topic, both
                   ;; ways, at QoS 1.
                   (format "connection edge-to-hub-%d" edge-port)
                   (format "address 127.0.0.1:%d" hub-port)
                   "topic canvasl/# both 1"
                   "cleansession false"
                   "restart_timeout 1")
                  edge-port))
           (edge-url (format "mqtt://127.0.0.1:%d" edge-port)))
      (unwind-protect
          (let ((meta-log-federation-heartbeat-interval 2))
            (delivery-test--as-peer
              (let* ((me (plist-get (meta-log-federation-get-local-peer-identity) :peer-id))
                     (delivered nil)
                     (got nil)
                     (meta-log-federation-peer-message-delivered-functions
                      (list (lambda (id _peer) (push id delivered))))
                     (meta-log-federation-peer-message-functions
                      (list (lambda (from text) (push (cons from text) got))))
                     (bob (delivery-test--start-peer
                           "bob" nil edge-url '(meta-log-federation-heartbeat-interval 2)))
                     (bob-id (process-get bob 'peer-id))
                     (file (meta-log-federation-test-canvas (meta-log-federation-test-peer-dir "own")))
                     (name (file-name-nondirectory file)))
                ;; This Emacs is on the hub, Bob on the edge: they meet through the bridge.
                (should (meta-log-federation-wait-until
                         (lambda () (eq (meta-log-federation-test-status bob-id) 'online)) 30))
                (should (meta-log-federation-wait-until
                         (lambda () (meta-log-federation-test-peer-line bob (concat "ONLINE " me)))
                         30))
                ;; A message across, its receipt back, and Bob's answer with its receipt.
                (let ((id (meta-log-federation-send-peer-message bob-id "echo:over-the-bridge")))
                  (should (meta-log-federation-wait-until (lambda () (member id delivered)) 30))
                  (should (eq 'delivered (meta-log-federation-peer-message-state id))))
                (should (meta-log-federation-wait-until
                         (lambda () (equal (cdr (assoc bob-id got)) "echoed:over-the-bridge")) 30))
                (should (meta-log-federation-wait-until
                         (lambda () (meta-log-federation-test-peer-line
                                     bob (format "DELIVERED [0-9a-f]+ %s" me)))
                         30))
                ;; A canvas shared on the hub reaches the edge; Bob's edit comes back.
                (let* ((url (meta-log-federation-share-canvasl file))
                       (bob-file (meta-log-federation-test-peer-file bob me name)))
                  (should (meta-log-federation-test-wait-converged (list file bob-file) 30))
                  (meta-log-federation-send-peer-message
                   bob-id (format "edit:%s|b|text|\"edited across the bridge\"" url))
                  (should (meta-log-federation-wait-until
                           (lambda ()
                             (and (string-search "edited across the bridge"
                                                 (meta-log-federation-test-file-string file))
                                  (meta-log-federation-test-converged (list file bob-file))))
                           30))
                  (when (find-buffer-visiting file)
                    (kill-buffer (find-buffer-visiting file)))))))
        (delivery-test--kill edge)))))

(ert-deftest delivery::two-emacs-of-one-identity-stop-throwing-each-other-off ()
  (delivery-test--with-broker (conf "twins")
    (let* ((first (delivery-test--start-peer "twin"))
           (dir2 (meta-log-federation-test-peer-dir "twin-copy")))
      ;; A second Emacs with a copy of the first one's identity.
      (copy-file (expand-file-name "identity.org" (process-get first 'dir))
                 (expand-file-name "identity.org" dir2))
      (let* ((second (delivery-test--start-peer (process-get first 'name) dir2))
             (both (list first second))
             (gave-way (lambda ()
                         (cl-remove-if-not
                          (lambda (p) (meta-log-federation-test-peer-line p "SESSION-ERROR"))
                          both))))
        (should (equal (process-get first 'peer-id) (process-get second 'peer-id)))
        ;; One of them gives way, once, and says so.
        (should (meta-log-federation-wait-until (lambda () (funcall gave-way)) 20))
        (should (string-match-p "another client uses the client id"
                                (meta-log-federation-test-peer-line
                                 (car (funcall gave-way)) "SESSION-ERROR \\(.*\\)")))
        ;; From then on neither is thrown off: the connection counts stay put.
        (meta-log-federation-wait-until #'ignore 2)
        (let ((counts (mapcar #'delivery-test--connects both)))
          (meta-log-federation-wait-until #'ignore 4)
          (should (equal counts (mapcar #'delivery-test--connects both))))
        (should (= 1 (length (funcall gave-way))))
        (should (= 1 (delivery-test--count-lines (car (funcall gave-way)) "SESSION-ERROR")))))))

(provide 'meta-log-federation-delivery-test)
;;; meta-log-federation-delivery-test.el ends here
