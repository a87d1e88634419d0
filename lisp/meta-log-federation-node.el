;;; meta-log-federation-node.el --- This Emacs as a federation peer  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;; This file is not part of GNU Emacs.

;;; Commentary:

;; `meta-log-federation-init' turns this Emacs into a federation peer:
;; it loads (or creates) the peer identity, starts the native federation
;; node, connects to the broker with a signed last will, subscribes to
;; the federation's topics and announces itself.  Every message on those
;; topics goes through the node's checks (signature, age, replay, topic,
;; trust, decryption) before any hook sees it; dropped ones are counted
;; by reason (`meta-log-federation-counters').  The module's session does
;; all of that, and the CanvasL merge and file writes, on its own thread:
;; Emacs receives finished events (peer online, peer message, file
;; updated, dropped, ...) and only runs the hooks below.
;;
;; Topics, with the prefix `meta-log-federation-topic-prefix':
;;   PREFIX/peers/PEER-ID/presence  retained presence, also the last will
;;   PREFIX/peers/announce          announcements
;;   PREFIX/sync                    CanvasL sync
;;   PREFIX/peers/PEER-ID/messages  encrypted messages to PEER-ID
;; docs/PROTOCOL.md describes the events.

;;; Code:

(require 'cl-lib)
(require 'subr-x)
(require 'meta-log-federation-custom)
(require 'meta-log-federation-events)
(require 'meta-log-federation-mqtt)
(require 'meta-log-federation-identity)
(require 'meta-log-federation-auth)
(require 'meta-log-federation-outbox)

(declare-function meta-log-federation--federation-start "meta-log-federation-module")
(declare-function meta-log-federation--federation-stop "meta-log-federation-module")
(declare-function meta-log-federation--federation-running-p "meta-log-federation-module")
(declare-function meta-log-federation--federation-announce "meta-log-federation-module")
(declare-function meta-log-federation--federation-depart "meta-log-federation-module")
(declare-function meta-log-federation--broker-url-redact "meta-log-federation-module")
(declare-function meta-log-federation--valid-peer-id-p "meta-log-federation-module")
(declare-function meta-log-federation--federation-send-peer-message "meta-log-federation-module")
(declare-function meta-log-federation--federation-tick "meta-log-federation-module")
(declare-function meta-log-federation--federation-peers "meta-log-federation-module")
(declare-function meta-log-federation--federation-peer "meta-log-federation-module")
(declare-function meta-log-federation--federation-peer-ids "meta-log-federation-module")
(declare-function meta-log-federation--federation-trust "meta-log-federation-module")
(declare-function meta-log-federation--federation-untrust "meta-log-federation-module")
(declare-function meta-log-federation--federation-block "meta-log-federation-module")
(declare-function meta-log-federation--federation-set-policy "meta-log-federation-module")
(declare-function meta-log-federation--federation-save-trust "meta-log-federation-module")
(declare-function meta-log-federation--federation-counters "meta-log-federation-module")
(declare-function meta-log-federation--federation-peer-id "meta-log-federation-module")
(declare-function meta-log-federation--federation-trust-entries "meta-log-federation-module")
(declare-function meta-log-federation--federation-client-id "meta-log-federation-module")
(declare-function meta-log-federation--session-report-accepted "meta-log-federation-module")
(declare-function meta-log-federation-embedded-broker-url "meta-log-federation-broker")
(declare-function meta-log-federation--mqtt-active-p "meta-log-federation-module")
(declare-function meta-log-federation-mqtt-connected-p "meta-log-federation-module")
(declare-function meta-log-federation-identity-peer-id "meta-log-federation-module")
(declare-function meta-log-federation-mode-line-mode "meta-log-federation-peer-list")
(declare-function meta-log-federation-chat--received "meta-log-federation-chat")
(declare-function meta-log-federation-chat--sent "meta-log-federation-chat")

;;;; Options

(defcustom meta-log-federation-mqtt-broker-url nil
  "Broker that `meta-log-federation-init' connects to.
A URL such as \"mqtt://broker.example:1883\" (also mqtts://, and
ws:// or wss:// for MQTT over WebSockets), or nil or \"embedded\"
for the project's own broker on this machine (started by the first
Emacs that needs it).  The environment variable META_LOG_MQTT_BROKER,
when set, takes precedence."
  :type '(choice (const :tag "Embedded broker on this machine" nil)
                 (string :tag "Broker URL"))
  :group 'meta-log-federation)

(defcustom meta-log-federation-blackboard-file
  (locate-user-emacs-file "meta-log/federation-blackboard.org")
  "Org file where the federation's peers are recorded.
The environment variable META_LOG_FEDERATION_BLACKBOARD, when set,
takes precedence."
  :type 'file
  :group 'meta-log-federation)

(defcustom meta-log-federation-display-name nil
  "Name this peer announces to the others, or nil for the default.
The default is USER@HOST, a middle dot and the first four hexadecimal
digits of this peer's id, such as \"alice@laptop·3f9a\": two Emacsen of
one user on one machine then announce different names, and trust on
first use does not take the second for an impersonation of the first.
A name set here is announced as it is; see
`meta-log-federation-effective-display-name'."
  :type '(choice (const :tag "USER@HOST·FINGERPRINT" nil)
                 (string :tag "Name"))
  :group 'meta-log-federation)

(defcustom meta-log-federation-topic-prefix "canvasl"
  "First levels of every federation topic.
Peers only meet peers with the same prefix, so several federations can
share one broker."
  :type 'string
  :group 'meta-log-federation)

(defcustom meta-log-federation-trust-policy 'tofu
  "Which peers are listened to.
`tofu': every peer, remembering its key the first time its name is
seen; a known name announced by a new key is held and warned about.
`allowlist': only peers trusted with `meta-log-federation-trust-peer'.
`open': every peer.  Blocked peers are never listened to."
  :type '(choice (const :tag "Trust on first use" tofu)
                 (const :tag "Only trusted peers" allowlist)
                 (const :tag "Everyone" open))
  :set (lambda (symbol value)
         (set-default symbol value)
         (when (and (fboundp 'meta-log-federation--federation-running-p)
                    (meta-log-federation--federation-running-p))
           (meta-log-federation--federation-set-policy value)))
  :group 'meta-log-federation)

(defcustom meta-log-federation-trust-file
  (locate-user-emacs-file "meta-log/trust.json")
  "File where trust decisions (pinned, trusted and blocked peers) are kept."
  :type 'file
  :group 'meta-log-federation)

(defcustom meta-log-federation-max-event-size 65536
  "Largest signed event, in bytes, that is sent or accepted.
Larger messages are refused when sending and dropped when received."
  :type 'natnum
  :group 'meta-log-federation)

(defcustom meta-log-federation-max-event-age 600
  "Oldest accepted event, in seconds (presence events are exempt)."
  :type 'natnum
  :group 'meta-log-federation)

(defcustom meta-log-federation-max-clock-skew 900
  "How far in the future, in seconds, an event's time may be."
  :type 'natnum
  :group 'meta-log-federation)

(defcustom meta-log-federation-replay-memory 100000
  "How many event ids are remembered to refuse replays."
  :type 'natnum
  :group 'meta-log-federation)

(defcustom meta-log-federation-stale-after 120
  "Seconds of silence after which an online peer is shown as stale."
  :type 'natnum
  :group 'meta-log-federation)

(defcustom meta-log-federation-heartbeat-interval 45
  "Seconds between two announcements of this peer's presence.
Keep it well below `meta-log-federation-stale-after' of the other peers."
  :type 'number
  :group 'meta-log-federation)

;;;; Hooks

(defvar meta-log-federation-peer-online-functions nil
  "Functions called with (PEER-ID NAME) when a peer comes online.")

(defvar meta-log-federation-peer-offline-functions nil
  "Functions called with (PEER-ID REASON) when a peer goes away.
REASON is `departed' (it said goodbye), `vanished' (the broker
published its last will) or `stale' (silent for longer than
`meta-log-federation-stale-after').")

(defvar meta-log-federation-peer-message-functions nil
  "Functions called with (FROM PAYLOAD) for each verified, decrypted peer message.")

(defvar meta-log-federation-dropped-functions nil
  "Functions called with (REASON MESSAGE PEER-ID) for each dropped message.
REASON is a string such as \"bad-signature\" or \"replay\"; PEER-ID is
nil when the sender could not be established.  Our own messages echoed
by the broker are not reported.")

(defvar meta-log-federation-peers-changed-hook nil
  "Normal hook run after the peer table changed (for displays).")

(defvar meta-log-mqtt-peer-announced-hook nil
  "Functions called with (PEER-ID PUBLIC-KEY ADDRESS) when a peer comes online.
The prototype's name, kept for code written for it.  PUBLIC-KEY is the
peer's x-only secp256k1 key in hex (equal to PEER-ID); ADDRESS is the
topic that messages to it go to.")

(defvar meta-log-mqtt-message-received-hook nil
  "Functions called with (TOPIC MESSAGE) for every accepted federation event.
The prototype's name, kept for code written for it.  MESSAGE is the
event's content: decrypted for peer messages, the presence or sync
content otherwise.")

(defvar meta-log-mqtt-peer-message-hook nil
  "Functions called with (FROM TO PAYLOAD SIGNATURE) for each peer message.
The prototype's name, kept for code written for it.  PAYLOAD is the
decrypted text, SIGNATURE the event's verified Schnorr signature.")

(defvar meta-log-federation-started-hook nil
  "Normal hook run when federation has started (CanvasL sync opens here).")

(defvar meta-log-federation-stopping-hook nil
  "Normal hook run when federation is about to stop.")

;;;; State

(defvar meta-log-federation-identity nil
  "The identity of this peer while federation runs.")

(defvar meta-log-federation--heartbeat-timer nil
  "Timer that re-announces presence and marks silent peers stale.")

(defvar meta-log-federation--last-drop-report 0
  "`float-time' of the last drop shown in the echo area.")

(defvar meta-log-federation--unreported-drops 0
  "Drops not shown since the last report (reports are rate-limited).")

(defvar meta-log-federation-messages-received 0
  "Peer messages received and decrypted since federation started.")

;;;; Environment

(defun meta-log-federation--env (name)
  "Return environment variable NAME, or nil when unset or empty."
  (let ((v (getenv name)))
    (and v (not (string-empty-p v)) v)))

(defconst meta-log-federation-environment-options
  '(("META_LOG_IDENTITY_FILE" meta-log-federation-identity-file)
    ("META_LOG_SYNC_STATE_DIRECTORY" meta-log-federation-sync-state-directory t))
  "Environment variables that set an option when the package loads.
Each entry is (VARIABLE OPTION DIRECTORY-P).  The Docker image sets
them to keep a peer's state in volumes.  META_LOG_MQTT_BROKER,
META_LOG_FEDERATION_BLACKBOARD and META_LOG_SYNC_DIRECTORY are read
each time they are needed instead (see `meta-log-federation-init'), and
META_LOG_ENABLE_FEDERATION=1 starts federation when the package loads
in a daemon or an interactive Emacs, never in batch Emacs.")

(defun meta-log-federation-apply-environment ()
  "Set the options named in `meta-log-federation-environment-options'.
A variable that is unset or empty changes nothing.  With
META_LOG_IDENTITY_FILE, the trust file moves beside the identity too
\(trust.json), unless `meta-log-federation-trust-file' was customized:
trust decisions belong with the key they were made for."
  (pcase-dolist (`(,name ,option ,directory-p) meta-log-federation-environment-options)
    (let ((value (meta-log-federation--env name)))
      (when value
        (set-default option (if directory-p (file-name-as-directory value) value))
        (when (and (eq option 'meta-log-federation-identity-file)
                   (equal meta-log-federation-trust-file
                          (eval (car (get 'meta-log-federation-trust-file 'standard-value)) t)))
          (set-default 'meta-log-federation-trust-file
                       (expand-file-name "trust.json" (file-name-directory value))))))))

(defun meta-log-federation--broker-url (&optional broker)
  "Return the broker URL to use: BROKER, the environment, the option.
\"embedded\" or nil means the embedded broker on this machine."
  (let ((url (or broker
                 (meta-log-federation--env "META_LOG_MQTT_BROKER")
                 meta-log-federation-mqtt-broker-url)))
    (if (or (null url) (equal url "embedded"))
        (progn
          (require 'meta-log-federation-broker nil t)
          (unless (fboundp 'meta-log-federation-embedded-broker-url)
            (signal 'meta-log-federation-error
                    (list "No broker configured and no embedded broker: set `meta-log-federation-mqtt-broker-url' or META_LOG_MQTT_BROKER")))
          (meta-log-federation-embedded-broker-url))
      url)))

(defun meta-log-federation-effective-display-name (&optional peer-id)
  "Return the name this peer announces.
`meta-log-federation-display-name' when it is set; otherwise
USER@HOST·XXXX, where XXXX begins PEER-ID (by default the id of
`meta-log-federation-identity'), or plain USER@HOST while no identity
is known."
  (or meta-log-federation-display-name
      (let ((id (or peer-id
                    (and meta-log-federation-identity
                         (meta-log-federation-identity-peer-id
                          meta-log-federation-identity))))
            (base (format "%s@%s" (user-login-name) (system-name))))
        (if id (format "%s·%s" base (substring id 0 4)) base))))

(defun meta-log-federation--redact-url (url)
  "Return URL with any password replaced by ***, for messages.
The module's rule (see `meta-log-federation--broker-url-redact')."
  (meta-log-federation--broker-url-redact url))

(defun meta-log-federation--blackboard-file (&optional file)
  "Return the blackboard file to use: FILE, the environment, the option."
  (expand-file-name (or file
                        (meta-log-federation--env "META_LOG_FEDERATION_BLACKBOARD")
                        meta-log-federation-blackboard-file)))

;;;; Identity

(defcustom meta-log-federation-offer-passphrase t
  "If non-nil, interactive init offers to protect a new identity with a passphrase.
That is, `meta-log-federation-init' asks when it creates the identity file.
Batch Emacs and daemons (Docker) are never asked: they create the file
unencrypted (mode 600), or load one made beforehand with
`meta-log-federation-identity-new' and passed in
`meta-log-federation-identity'."
  :type 'boolean
  :group 'meta-log-federation)

(defun meta-log-federation--may-ask-p ()
  "Return non-nil when a person can answer a question now."
  (and (not noninteractive) (not (daemonp))))

(defun meta-log-federation--new-identity-passphrase (file)
  "Ask whether to protect the new identity FILE; return a passphrase or nil."
  (when (and meta-log-federation-offer-passphrase
             (meta-log-federation--may-ask-p)
             (y-or-n-p (format "Protect the new identity %s with a passphrase (asked at each start)? "
                               (abbreviate-file-name file))))
    (let ((pass (read-passwd "Passphrase for the new identity: " t)))
      (if (equal pass "") nil pass))))

(defun meta-log-federation--load-or-create-identity ()
  "Return the identity in `meta-log-federation-identity-file'.
Create it when the file is missing, interactively offering to protect
it with a passphrase (see `meta-log-federation-offer-passphrase')."
  (let ((file (expand-file-name meta-log-federation-identity-file)))
    (if (not (file-exists-p file))
        (let* ((pass (meta-log-federation--new-identity-passphrase file))
               (encrypted (and pass t))
               (identity (meta-log-federation--with-passphrase
                          pass (lambda (p) (meta-log-federation-identity-create file p)))))
          (meta-log-federation--log
           (if encrypted
               "created peer identity %s in %s (encrypted: back the file up and remember the passphrase)"
             "created peer identity %s in %s (recovery phrase in clear: back the file up, or use `meta-log-federation-identity-new' for an encrypted one)")
           (meta-log-federation-identity-peer-id identity)
           (abbreviate-file-name file))
          identity)
      (condition-case err
          (meta-log-federation-identity-load file)
        (meta-log-federation-bad-passphrase
         (if (not (meta-log-federation--may-ask-p))
             (signal (car err)
                     (list (format "%s is encrypted: load it with `meta-log-federation-identity-load' and pass it to `meta-log-federation-init' through `meta-log-federation-identity'"
                                   file)))
           (meta-log-federation--with-passphrase
            (read-passwd (format "Passphrase of %s: " (abbreviate-file-name file)))
            (lambda (pass) (meta-log-federation-identity-load file pass)))))))))

;;;; Starting and stopping

(defun meta-log-federation-running-p ()
  "Return non-nil while federation is running in this Emacs."
  (and (fboundp 'meta-log-federation--federation-running-p)
       (meta-log-federation--federation-running-p)))

(defun meta-log-federation-connected-p ()
  "Return non-nil when federation is running and connected to its broker."
  (and (meta-log-federation-running-p)
       (meta-log-federation-mqtt-connected-p)))

(defun meta-log-federation--node-settings (identity)
  "Return the plist of settings for the native federation node of IDENTITY."
  (list :name (meta-log-federation-effective-display-name
               (meta-log-federation-identity-peer-id identity))
        :capabilities '("canvasl-sync" "nip44-messages")
        :prefix meta-log-federation-topic-prefix
        :policy meta-log-federation-trust-policy
        :trust-file meta-log-federation-trust-file
        :max-event-bytes meta-log-federation-max-event-size
        :max-age meta-log-federation-max-event-age
        :max-future meta-log-federation-max-clock-skew
        :replay-capacity meta-log-federation-replay-memory
        :stale-after meta-log-federation-stale-after))

(defun meta-log-federation-init (&optional blackboard-file mqtt-broker)
  "Start federation: identity, broker connection, blackboard, announcement.
BLACKBOARD-FILE is the Org blackboard (default: META_LOG_FEDERATION_BLACKBOARD,
else `meta-log-federation-blackboard-file'); it is created if missing.
MQTT-BROKER is the broker URL (default: META_LOG_MQTT_BROKER, else
`meta-log-federation-mqtt-broker-url'; \"embedded\" or nil means the
embedded broker).  A URL with a user and no password,
mqtt://USER@HOST:PORT, takes the password from `auth-sources' (see
`meta-log-federation-auth-broker-url').  The identity comes from
`meta-log-federation-identity-file', created on first use, unless
`meta-log-federation-identity' already holds one.  Stopping federation
\(`meta-log-federation-shutdown', or leaving Emacs) sets that variable
back to nil, so the next init reads the identity file again.  The
announced name is `meta-log-federation-effective-display-name'.  Return
t; when federation already runs, say so, change nothing and return nil."
  (interactive)
  (if (meta-log-federation-running-p)
      (progn
        (message "meta-log-federation: federation is already running as %s"
                 (meta-log-federation--federation-peer-id))
        nil)
    (when (meta-log-federation--mqtt-active-p)
      (user-error "An MQTT connection made with `meta-log-federation-mqtt-connect' is open: disconnect it first"))
    (let* ((url (meta-log-federation-auth-broker-url
                 (meta-log-federation--broker-url mqtt-broker)))
           (blackboard (meta-log-federation--blackboard-file blackboard-file))
           (identity (or meta-log-federation-identity
                         (meta-log-federation--load-or-create-identity)))
           (filters (meta-log-federation--federation-start
                     identity (meta-log-federation--node-settings identity))))
      (condition-case err
          (progn
            ;; Outbox first: messages left from an earlier session are resent once
            ;; connected.  A stable client id and a persistent session make the
            ;; broker keep our QoS 1 messages while we are away.
            (meta-log-federation--outbox-open
             (meta-log-federation-identity-peer-id identity))
            ;; The federation's topics go to the module's session, which
            ;; verifies, decrypts and merges off the main thread and sends
            ;; finished events (see `meta-log-federation--session-events').
            (meta-log-federation-mqtt-connect
             url :federation-will t :federation-inbound t :clean-session nil
             :client-id (meta-log-federation--federation-client-id)
             :subscribe filters)
            (meta-log-federation--report-accepted-watcher
             'meta-log-mqtt-message-received-hook
             (default-value 'meta-log-mqtt-message-received-hook) 'set nil))
        (error
         (meta-log-federation--outbox-close)
         (meta-log-federation--federation-stop)
         (signal (car err) (cdr err))))
      (setq meta-log-federation-identity identity
            meta-log-federation-messages-received 0)
      (add-hook 'meta-log-federation-mqtt-connected-hook
                #'meta-log-federation--announce-on-connect)
      (setq meta-log-federation--heartbeat-timer
            (run-at-time meta-log-federation-heartbeat-interval
                         meta-log-federation-heartbeat-interval
                         #'meta-log-federation--heartbeat))
      (when (fboundp 'meta-log-federation-blackboard-start)
        (meta-log-federation-blackboard-start blackboard))
      (when (and (bound-and-true-p meta-log-federation-show-in-mode-line)
                 (fboundp 'meta-log-federation-mode-line-mode))
        (meta-log-federation-mode-line-mode 1))
      (meta-log-federation--log "federation started as %s (%s) on %s"
                                (meta-log-federation-effective-display-name)
                                (meta-log-federation--short-id
                                 (meta-log-federation-identity-peer-id identity))
                                (meta-log-federation--redact-url url))
      (meta-log-federation--run-hook-safely 'meta-log-federation-started-hook)
      (run-hooks 'meta-log-federation-peers-changed-hook)
      t)))

(defun meta-log-federation--stop-node (&optional reason)
  "Announce departure with REASON, stop the node; return non-nil if it ran.
The MQTT connection stays: the caller closes it, which flushes the
departure first."
  (when (meta-log-federation-running-p)
    (meta-log-federation--run-hook-safely 'meta-log-federation-stopping-hook)
    (when (meta-log-federation-mqtt-connected-p)
      (ignore-errors (meta-log-federation--federation-depart (or reason "shutdown"))))
    (meta-log-federation--save-trust)
    (meta-log-federation--outbox-close)
    (when (timerp meta-log-federation--heartbeat-timer)
      (cancel-timer meta-log-federation--heartbeat-timer))
    (setq meta-log-federation--heartbeat-timer nil)
    (remove-hook 'meta-log-federation-mqtt-connected-hook
                 #'meta-log-federation--announce-on-connect)
    (when (fboundp 'meta-log-federation-blackboard-stop)
      (meta-log-federation-blackboard-stop))
    (meta-log-federation--federation-stop)
    ;; The next init loads the identity file again (it may have changed).
    (setq meta-log-federation-identity nil)
    (run-hooks 'meta-log-federation-peers-changed-hook)
    t))

(defun meta-log-federation--save-trust ()
  "Save the trust file if it changed; report a failure instead of signalling."
  (condition-case err
      (meta-log-federation--federation-save-trust)
    (error (display-warning 'meta-log-federation
                            (format "Trust decisions could not be saved: %s"
                                    (error-message-string err))
                            :error))))

(defun meta-log-federation--announce-on-connect ()
  "Announce this peer after every (re)connection."
  (when (meta-log-federation-running-p)
    (meta-log-federation--federation-announce)))

(defun meta-log-federation--heartbeat ()
  "Re-announce presence and mark silent peers stale."
  (when (meta-log-federation-running-p)
    (when (meta-log-federation-mqtt-connected-p)
      (condition-case err
          (meta-log-federation--federation-announce)
        (error (meta-log-federation--log "heartbeat: %s" (error-message-string err)))))
    (meta-log-federation--run-transitions (meta-log-federation--federation-tick))
    (meta-log-federation--save-trust)))

;;;; Receiving

;; The session sends one finished event per thing that happened; each
;; handler below runs the hooks for it, nothing else.

(defun meta-log-federation--on-peer-message (event)
  "Run the hooks for EVENT [peer-message FROM TEXT ID SIG TOPIC]."
  (let ((from (aref event 1))
        (text (aref event 2)))
    (setq meta-log-federation-messages-received
          (1+ meta-log-federation-messages-received))
    ;; Shown to the person whatever hooks are installed (chat.el).
    (when (fboundp 'meta-log-federation-chat--received)
      (meta-log-federation--safe-funcall
       #'meta-log-federation-chat--received 'message from text))
    (meta-log-federation--run-hook-safely
     'meta-log-federation-peer-message-functions from text)
    (when meta-log-mqtt-peer-message-hook
      (meta-log-federation--run-hook-safely
       'meta-log-mqtt-peer-message-hook from
       (meta-log-federation--federation-peer-id) text (aref event 4)))
    (meta-log-federation--run-hook-safely
     'meta-log-mqtt-message-received-hook (aref event 5) text)))

(defun meta-log-federation--on-receipt (event)
  "Note the deliveries of EVENT [receipt IDS PEERS].
IDS and PEERS are 64-character ids one after the other: the Nth id
went to the Nth peer (strings cross from the module more cheaply
than a list of pairs)."
  (let ((ids (aref event 1))
        (peers (aref event 2))
        (pairs nil))
    (dotimes (i (/ (length ids) 64))
      (let ((at (* i 64)))
        (push (list (substring ids at (+ at 64)) (substring peers at (+ at 64))) pairs)))
    (meta-log-federation--note-delivered (nreverse pairs))))

(defun meta-log-federation--on-accepted (event)
  "Run the prototype's hook for EVENT [accepted TOPIC KIND CONTENT].
The session sends these only while the hook has functions."
  (meta-log-federation--run-hook-safely
   'meta-log-mqtt-message-received-hook (aref event 1)
   (and (memq (aref event 2) '(sync-change sync-request sync-response))
        (aref event 3))))

(defun meta-log-federation--on-dropped (event)
  "Report EVENT [dropped REASON MESSAGE PEER QUIET]."
  (meta-log-federation--dropped
   (list :reason (aref event 1) :message (aref event 2)
         :peer (aref event 3) :quiet (aref event 4))))

(defun meta-log-federation--on-transition (event)
  "Run the hooks for the peer transition EVENT.
EVENT is [peer-online PEER NAME ADDRESS], [peer-offline PEER REASON]
or [key-conflict NEW-PEER NAME KNOWN-PEER]."
  (meta-log-federation--run-transitions
   (list (pcase (aref event 0)
           ('peer-online (list 'came-online (aref event 1) (aref event 2)))
           ('peer-offline
            (if (eq (aref event 2) 'stale)
                (list 'went-stale (aref event 1))
              (list 'went-offline (aref event 1) (eq (aref event 2) 'departed))))
           ('key-conflict
            (list 'key-conflict (aref event 1) (aref event 2) (aref event 3)))))))

(defun meta-log-federation--report-accepted-watcher (_symbol value operation _where)
  "Ask the session for accepted-event reports while the hook has functions.
Watches `meta-log-mqtt-message-received-hook': VALUE is its new value
when OPERATION is `set'."
  (when (and (eq operation 'set)
             (fboundp 'meta-log-federation--session-report-accepted))
    (meta-log-federation--session-report-accepted (and value t))))

(add-variable-watcher 'meta-log-mqtt-message-received-hook
                      #'meta-log-federation--report-accepted-watcher)

(defconst meta-log-federation--session-events
  '((peer-message . meta-log-federation--on-peer-message)
    (receipt . meta-log-federation--on-receipt)
    (accepted . meta-log-federation--on-accepted)
    (dropped . meta-log-federation--on-dropped)
    (peer-online . meta-log-federation--on-transition)
    (peer-offline . meta-log-federation--on-transition)
    (key-conflict . meta-log-federation--on-transition))
  "The session's events that federation handles: (TYPE . HANDLER).")

(pcase-dolist (`(,type . ,handler) meta-log-federation--session-events)
  (meta-log-federation--on-event type handler))

(defun meta-log-federation--dropped (result)
  "Report the dropped message RESULT (rate-limited in the echo area).
Replays are counted and passed to the hook but not shown: MQTT delivers
at least once, so a retained presence met both live and retained, or a
message resent after a reconnect, is a normal duplicate."
  (unless (plist-get result :quiet)
    (let ((reason (plist-get result :reason))
          (text (plist-get result :message))
          (now (float-time)))
      (meta-log-federation--run-hook-safely
       'meta-log-federation-dropped-functions reason text (plist-get result :peer))
      (cond
       ((equal reason "replay"))
       ((< (- now meta-log-federation--last-drop-report) 1.0)
        (cl-incf meta-log-federation--unreported-drops))
       (t
        (meta-log-federation--log "dropped a message (%s): %s%s" reason text
                                  (if (> meta-log-federation--unreported-drops 0)
                                      (format " (and %d more not shown)"
                                              meta-log-federation--unreported-drops)
                                    ""))
        (setq meta-log-federation--last-drop-report now
              meta-log-federation--unreported-drops 0))))))

(defun meta-log-federation--conflict-warning (new name known)
  "Return the warning for the NEW key that claims NAME, held by KNOWN.
It says which command resolves the conflict, and with which key, and
how to avoid the clash by renaming."
  (let ((candidate (format "%s  %s" (meta-log-federation--safe-name name)
                           (meta-log-federation--short-id new))))
    (format "The name \"%s\" (or one that looks like it), known for peer %s, was announced by a NEW key %s.  Nothing from the new key is accepted until you decide.  If it is you (another Emacs of yours) or someone you expect, trust that key: M-x meta-log-federation-trust-peer and choose %s (state conflict; M-x meta-log-federation-list-peers shows it too), or M-: (meta-log-federation-trust-peer \"%s\"); it then replaces the old key.  If not, block it: M-x meta-log-federation-block-peer and the same choice, or M-: (meta-log-federation-block-peer \"%s\").  To avoid the clash, give one of the two Emacsen another name (`meta-log-federation-display-name'; nil, the default, adds a fingerprint of the key)."
            (meta-log-federation--safe-name name) known new candidate new new)))

(defun meta-log-federation--run-transitions (transitions)
  "Run the hooks for the peer TRANSITIONS the node reported."
  (when transitions
    (dolist (tr transitions)
      (pcase tr
        (`(came-online ,peer ,name)
         (meta-log-federation--log "peer %s (%s) is online"
                                   (meta-log-federation--safe-name name)
                                   (meta-log-federation--short-id peer))
         (meta-log-federation--run-hook-safely
          'meta-log-federation-peer-online-functions peer name)
         (meta-log-federation--run-hook-safely
          'meta-log-mqtt-peer-announced-hook peer peer
          (plist-get (meta-log-federation--federation-peer peer) :address)))
        (`(went-offline ,peer ,graceful)
         (meta-log-federation--log "peer %s %s"
                                   (meta-log-federation--peer-label peer)
                                   (if graceful "left" "vanished (last will)"))
         (meta-log-federation--run-hook-safely
          'meta-log-federation-peer-offline-functions peer
          (if graceful 'departed 'vanished)))
        (`(went-stale ,peer)
         (meta-log-federation--run-hook-safely
          'meta-log-federation-peer-offline-functions peer 'stale))
        (`(key-conflict ,new ,name ,known)
         (display-warning
          'meta-log-federation
          (meta-log-federation--conflict-warning new name known)
          :warning))))
    (run-hooks 'meta-log-federation-peers-changed-hook)))

;;;; Peers

(defun meta-log-federation--short-id (peer-id)
  "Return the first 12 characters of PEER-ID."
  (if (> (length peer-id) 12) (substring peer-id 0 12) peer-id))

(defconst meta-log-federation--max-shown-name 48
  "Most characters of a peer's display name shown anywhere.")

(defun meta-log-federation--safe-name (name)
  "Return NAME, text a peer sent, made safe to show as one line.
Control, line and paragraph separator and invisible format characters
\(which the module already refuses) become \\uXXXX escapes, so a name can
never break a line, reorder text or hide characters; a long name is cut
with an ellipsis.  Nil or an empty NAME gives \"?\".  Insert the result
with \"%s\", never as a format string."
  (if (or (not (stringp name)) (string-empty-p name))
      "?"
    (let ((safe (if (not (string-match-p "[^[:ascii:]]\\|[[:cntrl:]]" name))
                    name                ; the usual case, quickly
                  (mapconcat
                 (lambda (c)
                   (if (memq (get-char-code-property c 'general-category)
                             '(Cc Cf Zl Zp Cs Co Cn))
                       (format "\\u%04X" c)
                     (char-to-string c)))
                 name ""))))
      (if (> (length safe) meta-log-federation--max-shown-name)
          (concat (substring safe 0 (1- meta-log-federation--max-shown-name)) "…")
        safe))))

(defun meta-log-federation--peer-label (peer-id)
  "Return \"NAME (SHORT-ID)\" for PEER-ID, safe to show anywhere.
This is the one place a peer's name is made fit for display: NAME is
what the peer announced, passed through `meta-log-federation--safe-name',
and the short id always follows it, because a name alone proves nothing."
  (let ((name (and (meta-log-federation-running-p)
                   (meta-log-federation--peer-id-p peer-id)
                   (plist-get (meta-log-federation--federation-peer peer-id) :name))))
    (if (and (stringp name) (not (string-empty-p name)))
        (format "%s (%s)" (meta-log-federation--safe-name name)
                (meta-log-federation--short-id peer-id))
      (meta-log-federation--short-id (format "%s" peer-id)))))

(defun meta-log-federation--peer-id-p (object)
  "Return non-nil if OBJECT is a peer id: 64 lowercase hexadecimal characters.
The module's rule (see `meta-log-federation--valid-peer-id-p')."
  (meta-log-federation--valid-peer-id-p object))

(defun meta-log-federation--check-peer-id (peer-id)
  "Signal `meta-log-federation-unknown-peer' unless PEER-ID is 64 lowercase hex."
  (unless (meta-log-federation--peer-id-p peer-id)
    (signal 'meta-log-federation-unknown-peer
            (list (format "%S is not a peer id (64 hex characters): see `meta-log-federation-discover-peers'"
                          peer-id)))))

(defun meta-log-federation--require-running ()
  "Signal `meta-log-federation-not-running' unless federation is running."
  (unless (meta-log-federation-running-p)
    (signal 'meta-log-federation-not-running
            (list "Federation is not running: call `meta-log-federation-init' first"))))

(defun meta-log-federation-discover-peers ()
  "Return the ids of the known peers (online or not), sorted.
Interactively, show how many are online."
  (interactive)
  (meta-log-federation--require-running)
  (let ((ids (meta-log-federation--federation-peer-ids)))
    (when (called-interactively-p 'interactive)
      (message "meta-log-federation: %d peers known, %d online"
               (length ids) (meta-log-federation-peers-online)))
    ids))

(defun meta-log-federation-peers ()
  "Return the known peers with their details, as a list of plists.
Keys: :peer-id :name :status (online, offline or stale) :last-seen
:software :protocol :capabilities :messages-in (peer messages received)
:sync-in (sync events received) :messages-out (peer messages sent) :trust
:address."
  (meta-log-federation--require-running)
  (meta-log-federation--federation-peers))

(defun meta-log-federation-peer (peer-id)
  "Return the details of PEER-ID as a plist (see `meta-log-federation-peers')."
  (meta-log-federation--require-running)
  (meta-log-federation--federation-peer peer-id))

(defun meta-log-federation-peers-online ()
  "Return the number of peers online (0 when federation is off)."
  (if (meta-log-federation-running-p)
      (cl-count 'online (meta-log-federation--federation-peers)
                :key (lambda (p) (plist-get p :status)))
    0))

(defun meta-log-federation-trust-entries ()
  "Return every key the trust store knows, as a list of plists.
Keys: :peer-id, :name (the display name it was pinned with or claims,
or nil), :state (pinned, trusted, conflict or blocked), :since and
:replaces (for a held key, state `conflict', the key whose name it
claims).  Held and blocked keys are listed even when no peer with that
key is known."
  (meta-log-federation--require-running)
  (meta-log-federation--federation-trust-entries))

(defun meta-log-federation--known-keys (&optional predicate)
  "Return every key known to the peer table or the trust store.
The value is a list of plists with :peer-id, :name, :state (trust
state) and :status (online, offline, stale, or nil for a key the peer
table does not hold).  PREDICATE, if non-nil, filters them."
  (let ((keys (make-hash-table :test #'equal))
        (order nil))
    (dolist (p (meta-log-federation--federation-peers))
      (let ((id (plist-get p :peer-id)))
        (push id order)
        (puthash id (list :peer-id id :name (plist-get p :name)
                          :state (plist-get p :trust) :status (plist-get p :status))
                 keys)))
    (dolist (e (meta-log-federation--federation-trust-entries))
      (let* ((id (plist-get e :peer-id))
             (known (gethash id keys)))
        (if known
            (when (string-empty-p (or (plist-get known :name) ""))
              (puthash id (plist-put known :name (plist-get e :name)) keys))
          (push id order)
          (puthash id (list :peer-id id :name (plist-get e :name)
                            :state (plist-get e :state) :status nil)
                   keys))))
    (cl-remove-if-not (or predicate #'identity)
                      (mapcar (lambda (id) (gethash id keys)) (nreverse order)))))

(defun meta-log-federation--key-candidate (key)
  "Return the completion string of KEY: \"NAME  SHORT-ID\"."
  (format "%s  %s" (meta-log-federation--safe-name (plist-get key :name))
          (meta-log-federation--short-id (plist-get key :peer-id))))

(defun meta-log-federation--read-peer (prompt &optional predicate)
  "Read a peer with completion, showing PROMPT; return its id.
Every key the peer table or the trust store knows is offered (known,
held and blocked), shown as NAME and short id, annotated with its
trust state and status.  A full peer id (64 hex characters) or an
unambiguous prefix of a known one is also accepted.  PREDICATE, if
non-nil, filters the key plists offered (see
`meta-log-federation--known-keys')."
  (meta-log-federation--require-running)
  (let* ((keys (meta-log-federation--known-keys predicate))
         (table (mapcar (lambda (k) (cons (meta-log-federation--key-candidate k) k)) keys))
         (annotate (lambda (candidate)
                     (let ((k (cdr (assoc candidate table))))
                       (when k
                         (format "  [%s%s]" (plist-get k :state)
                                 (if (plist-get k :status)
                                     (format ", %s" (plist-get k :status))
                                   ""))))))
         (collection (lambda (string pred action)
                       (if (eq action 'metadata)
                           `(metadata (category . meta-log-federation-peer)
                                      (annotation-function . ,annotate))
                         (complete-with-action action table string pred)))))
    (unless table
      (user-error "No peer known yet: wait for peers to announce themselves"))
    (let* ((answer (string-trim (completing-read prompt collection nil 'confirm)))
           (hit (cdr (assoc answer table))))
      (cond
       (hit (plist-get hit :peer-id))
       ((meta-log-federation--peer-id-p answer) answer)
       (t
        (let ((ids (cl-remove-if-not (lambda (k) (and (>= (length answer) 4)
                                                      (string-prefix-p answer (plist-get k :peer-id))))
                                     keys)))
          (if (= (length ids) 1)
              (plist-get (car ids) :peer-id)
            (user-error "%S is not a known peer: choose one from the list or give its full id (64 hex characters)"
                        answer))))))))

;;;; Messages

(defun meta-log-federation-send-peer-message (peer-id payload)
  "Send PAYLOAD (a string) to PEER-ID, encrypted so only it can read it.
The message is signed, encrypted with NIP-44 and published on the
peer's messages topic; return its event id.  It stays in the outbox
and is resent until the peer's receipt arrives: then
`meta-log-federation-peer-message-delivered-functions' run, or, after
`meta-log-federation-outbox-expiry', the -failed-functions.  Signals
`meta-log-federation-unknown-peer' for a peer that has not announced
itself, `meta-log-federation-too-large' when the event would exceed
`meta-log-federation-max-event-size'."
  (interactive
   (list (meta-log-federation--read-peer "Send a message to: ")
         (read-string "Message: ")))
  (meta-log-federation--require-running)
  (meta-log-federation--check-peer-id peer-id)
  (unless (stringp payload)
    (signal 'wrong-type-argument (list 'stringp payload)))
  (let ((id (meta-log-federation--federation-send-peer-message peer-id payload)))
    ;; Shown in the conversation, whoever sent it (chat.el).
    (when (fboundp 'meta-log-federation-chat--sent)
      (meta-log-federation--safe-funcall
       #'meta-log-federation-chat--sent 'send-peer-message peer-id payload id))
    (meta-log-federation--note-sent id peer-id)
    (when (called-interactively-p 'interactive)
      (message "meta-log-federation: sent to %s" (meta-log-federation--peer-label peer-id)))
    id))

;;;; Trust

(defun meta-log-federation--trust-decision (function peer-id done interactive)
  "Apply the trust decision FUNCTION to PEER-ID and return its value.
The decision is saved by the module; displays are refreshed.  When
INTERACTIVE, say \"PEER DONE\" in the echo area."
  (meta-log-federation--require-running)
  (meta-log-federation--check-peer-id peer-id)
  (prog1 (funcall function peer-id)
    (run-hooks 'meta-log-federation-peers-changed-hook)
    (when interactive
      (message "meta-log-federation: %s %s" (meta-log-federation--peer-label peer-id) done))))

(defun meta-log-federation--trust-entry (peer-id)
  "Return the trust store's plist of PEER-ID, or nil."
  (cl-find peer-id (meta-log-federation--federation-trust-entries)
           :key (lambda (e) (plist-get e :peer-id)) :test #'equal))

(defun meta-log-federation-trust-peer (peer-id)
  "Trust PEER-ID: accept its messages under every policy (saved).
When PEER-ID is held (trust state `conflict') because it claims the
name of another key that was only pinned automatically, trusting it
resolves the conflict: the old key is forgotten, so the trusted key
may use the name.  An old key you trusted explicitly stays; forget it
with `meta-log-federation-untrust-peer' to hand over its name."
  (interactive (list (meta-log-federation--read-peer "Trust peer: ")))
  (meta-log-federation--require-running)
  (meta-log-federation--check-peer-id peer-id)
  (let* ((entry (meta-log-federation--trust-entry peer-id))
         (old (and (eq (plist-get entry :state) 'conflict)
                   (plist-get entry :replaces)))
         (old-state (and old (plist-get (meta-log-federation--trust-entry old) :state)))
         (interactive (called-interactively-p 'interactive)))
    (prog1 (meta-log-federation--trust-decision
            #'meta-log-federation--federation-trust peer-id "is trusted" interactive)
      (pcase old-state
        ('pinned
         (meta-log-federation--federation-untrust old)
         (run-hooks 'meta-log-federation-peers-changed-hook)
         (message "meta-log-federation: %s is trusted and replaces %s, whose name it claimed"
                  (meta-log-federation--short-id peer-id)
                  (meta-log-federation--short-id old)))
        ('trusted
         (message "meta-log-federation: %s is trusted, but %s, which you trust too, holds its name: forget one of them (M-x meta-log-federation-untrust-peer)"
                  (meta-log-federation--short-id peer-id)
                  (meta-log-federation--short-id old)))))))

(defun meta-log-federation-untrust-peer (peer-id)
  "Forget any trust decision about PEER-ID (saved).
Return non-nil if there was one."
  (interactive (list (meta-log-federation--read-peer "Forget trust in peer: ")))
  (meta-log-federation--trust-decision #'meta-log-federation--federation-untrust peer-id
                                       "is no longer trusted or blocked"
                                       (called-interactively-p 'interactive)))

(defun meta-log-federation-block-peer (peer-id)
  "Block PEER-ID: drop everything it sends from now on (saved)."
  (interactive (list (meta-log-federation--read-peer "Block peer: ")))
  (meta-log-federation--trust-decision #'meta-log-federation--federation-block peer-id
                                       "is blocked" (called-interactively-p 'interactive)))

;;;; Counters

(defun meta-log-federation-counters ()
  "Return the federation's counters as a plist; show them interactively.
Keys: :sent, :accepted, :dropped (events a check refused), :echoes (our
own events echoed back by the broker: normal MQTT behaviour, not
drops), :replay-size, :messages-received and :drops, an alist (REASON
. COUNT) of every reason a message is dropped for."
  (interactive)
  (meta-log-federation--require-running)
  (let ((c (append (meta-log-federation--federation-counters)
                   (list :messages-received meta-log-federation-messages-received))))
    (when (called-interactively-p 'interactive)
      (message "meta-log-federation: sent %d, accepted %d, dropped %d%s (own events echoed back by the broker, not drops: %d)"
               (plist-get c :sent) (plist-get c :accepted) (plist-get c :dropped)
               (mapconcat (lambda (d) (format " %s:%d" (car d) (cdr d)))
                          (cl-remove-if #'zerop (plist-get c :drops) :key #'cdr)
                          "")
               (plist-get c :echoes)))
    c))

(defun meta-log-federation-drop-count (reason)
  "Return how many messages were dropped for REASON (a string)."
  (or (cdr (assoc reason (plist-get (meta-log-federation-counters) :drops))) 0))

(provide 'meta-log-federation-node)
;;; meta-log-federation-node.el ends here
