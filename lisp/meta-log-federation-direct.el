;;; meta-log-federation-direct.el --- Direct peer links (WebRTC, TCP fallback)  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;; This file is not part of GNU Emacs.

;;; Commentary:

;; Direct links between two peers, so that their messages and the sync
;; traffic addressed to each other skip the broker.  A link is set up
;; through signed, encrypted signalling over the federation, and is a
;; WebRTC data channel (when the module is built with it) or TLS 1.3
;; over TCP to a peer that listens (`meta-log-federation-tcp-listen').
;; While a link is up, the same signed events travel over it and go
;; through every inbound check; presence and broadcasts stay on MQTT;
;; when it drops, the broker carries everything again, with nothing lost
;; or shown twice.  docs/PROTOCOL.md §16 specifies the wire format;
;; docs/FEDERATION_GUIDE.md explains the settings.
;;
;;   `meta-log-federation-connect-to-peer'   opens a link (returns at once)
;;   `meta-log-federation-disconnect-peer'   closes it
;;   `meta-log-federation-peer-links'        one plist per link
;;   `meta-log-federation-direct-links'      when links open by themselves
;;   `meta-log-federation-link-up-functions', `-link-down-functions'

;;; Code:

(require 'cl-lib)
(require 'meta-log-federation-custom)
(require 'meta-log-federation-node)
(require 'meta-log-federation-compat)

(declare-function meta-log-federation--links-start "meta-log-federation-module" (plist))
(declare-function meta-log-federation--links-stop "meta-log-federation-module" ())
(declare-function meta-log-federation--links-available-p "meta-log-federation-module" ())
(declare-function meta-log-federation--links-connect "meta-log-federation-module" (peer-id))
(declare-function meta-log-federation--links-close "meta-log-federation-module" (peer-id))
(declare-function meta-log-federation--links-list "meta-log-federation-module" ())
(declare-function meta-log-federation--links-take-events "meta-log-federation-module" ())
(declare-function meta-log-federation--links-counters "meta-log-federation-module" ())
(declare-function meta-log-federation--links-rest-credentials "meta-log-federation-module"
                  (secret user ttl))

(defcustom meta-log-federation-direct-links nil
  "When direct links to peers open by themselves.
nil: only when asked (`meta-log-federation-connect-to-peer');
t: to each peer that is online and that the trust policy accepts
   (trusted, or pinned under `tofu');
`on-demand': when a message or sync event is about to go to a peer.
Peers always answer a link another peer asks for."
  :type '(choice (const :tag "Only when asked" nil)
                 (const :tag "To every trusted online peer" t)
                 (const :tag "When messaging or syncing" on-demand))
  :group 'meta-log-federation)

(defcustom meta-log-federation-tcp-listen nil
  "Where the TCP fallback of direct links listens, or nil for nowhere.
A string \"HOST:PORT\" with an IP address, such as \"0.0.0.0:7448\".
The address is offered to peers in encrypted signalling; a peer that
cannot reach it (and that listens nowhere either) stays on the broker.
Takes effect when federation starts."
  :type '(choice (const :tag "Do not listen" nil)
                 (string :tag "HOST:PORT"))
  :group 'meta-log-federation)

(defcustom meta-log-federation-tcp-advertise nil
  "Address offered to peers for the TCP fallback; nil: the listener's.
A string \"HOST:PORT\" with an IP address.  Behind a home router the
listener's address (`meta-log-federation-tcp-listen') is private: forward
a TCP port of the router to the listener and write the router's public
address and that port here, such as \"203.0.113.7:7448\".  Peers dial
it when WebRTC cannot find a path (a network that blocks UDP).  Takes
effect when federation starts."
  :type '(choice (const :tag "The listener's own address" nil)
                 (string :tag "Public HOST:PORT"))
  :group 'meta-log-federation)

(defcustom meta-log-federation-webrtc t
  "Whether a direct link first tries a WebRTC data channel.
Non-nil (the default, in a module built with WebRTC): ICE finds a path
through NATs (host, STUN or TURN candidates, see
`meta-log-federation-ice-servers'), and the TCP fallback is tried only
when ICE fails.  nil: the TCP fallback only (see
`meta-log-federation-tcp-listen').  Takes effect when federation starts."
  :type 'boolean
  :group 'meta-log-federation)

(defcustom meta-log-federation-ice-servers nil
  "STUN and TURN servers for WebRTC links, as WebRTC's iceServers.
Each entry is a plist (:urls URL :username U :credential C), URL a
string or a list of strings such as \"stun:stun.example.org:3478\" or
\"turn:turn.example.org:3478?transport=udp\".  For a coturn server with
a shared secret (`use-auth-secret'), write (:urls URL :secret S) and
optionally :username: time-limited credentials are computed from it.
Takes effect when federation starts."
  :type '(repeat (plist :options ((:urls (choice string (repeat string)))
                                  (:username string)
                                  (:credential string)
                                  (:secret string))))
  :group 'meta-log-federation)

(defcustom meta-log-federation-link-setup-timeout 15
  "Seconds one attempt to open a direct link may take."
  :type 'natnum
  :group 'meta-log-federation)

(defvar meta-log-federation-link-up-functions nil
  "Functions called with (PEER-ID PATH) when a direct link comes up.
PATH is host, srflx, relay or tcp.")

(defvar meta-log-federation-link-down-functions nil
  "Functions called with (PEER-ID REASON) when a direct link goes down.
Also when an attempt fails; REASON is a string.  Traffic to PEER-ID goes
through the broker again.")

(defvar meta-log-federation-direct--timer nil
  "Timer polling link changes while direct links run.")

(defvar meta-log-federation-direct--running nil
  "Non-nil while direct links run.")

(defconst meta-log-federation-direct--poll-interval 0.5
  "Seconds between two looks at the links' changes.")

(defconst meta-log-federation-direct--auto-interval 10
  "Seconds between two looks for trusted online peers without a link.")

(defvar meta-log-federation-direct--last-auto 0
  "When the last look for peers without a link happened (`float-time').")

(defun meta-log-federation-direct-available-p ()
  "Return non-nil if this build of the module can open direct links."
  (and (fboundp 'meta-log-federation--links-available-p)
       (meta-log-federation--links-available-p)))

(defun meta-log-federation-direct--unavailable ()
  "Signal that this build has no direct links, and how to get them."
  (signal 'meta-log-federation-error
          (list "This build of the module has no direct links: rebuild it with `make module FEATURES=tls' (TLS is in the default build)")))

(defun meta-log-federation-direct-rest-credentials (secret &optional user ttl)
  "Return coturn REST credentials (USERNAME PASSWORD) for SECRET.
USER is added to the user name; TTL is how many seconds they stay
valid (a day by default)."
  (unless (stringp secret)
    (signal 'wrong-type-argument (list 'stringp secret)))
  (meta-log-federation--links-rest-credentials secret (or user "") (or ttl 86400)))

(defun meta-log-federation-direct-start ()
  "Start direct links for the running federation.
Runs from `meta-log-federation-started-hook'."
  (when (and (meta-log-federation-direct-available-p)
             (not meta-log-federation-direct--running))
    (let ((addr (meta-log-federation--links-start
                 (list :tcp-listen meta-log-federation-tcp-listen
                       :tcp-advertise meta-log-federation-tcp-advertise
                       :ice-servers meta-log-federation-ice-servers
                       :webrtc meta-log-federation-webrtc
                       :auto meta-log-federation-direct-links
                       :setup-timeout meta-log-federation-link-setup-timeout))))
      (setq meta-log-federation-direct--running t)
      (when addr
        (meta-log-federation--log "direct links: TCP fallback listening on %s" addr))
      (setq meta-log-federation-direct--timer
            (run-at-time meta-log-federation-direct--poll-interval
                         meta-log-federation-direct--poll-interval
                         #'meta-log-federation-direct--poll)))))

(defun meta-log-federation-direct-stop ()
  "Close every direct link (from `meta-log-federation-stopping-hook')."
  (when (timerp meta-log-federation-direct--timer)
    (cancel-timer meta-log-federation-direct--timer))
  (setq meta-log-federation-direct--timer nil)
  (when meta-log-federation-direct--running
    (setq meta-log-federation-direct--running nil)
    (meta-log-federation--links-stop)))

(defun meta-log-federation-direct--poll ()
  "Run the hooks of the links' new states; open links to online peers if asked to."
  (when meta-log-federation-direct--running
    (let ((events (meta-log-federation--links-take-events)))
      (dolist (e events)
        (pcase e
          (`(up ,peer ,path)
           (meta-log-federation--log "direct link to %s up (%s)"
                                     (meta-log-federation--peer-label peer) path)
           (meta-log-federation--run-hook-safely
            'meta-log-federation-link-up-functions peer path))
          (`(down ,peer ,reason)
           (meta-log-federation--log "direct link to %s down: %s"
                                     (meta-log-federation--peer-label peer) reason)
           (meta-log-federation--run-hook-safely
            'meta-log-federation-link-down-functions peer reason))))
      (when events
        (run-hooks 'meta-log-federation-peers-changed-hook)))
    (when (and (eq meta-log-federation-direct-links t)
               (> (- (float-time) meta-log-federation-direct--last-auto)
                  meta-log-federation-direct--auto-interval))
      (setq meta-log-federation-direct--last-auto (float-time))
      (meta-log-federation-direct--link-online-peers))))

(defun meta-log-federation-direct--accepted-p (trust)
  "Return non-nil if a peer in trust state TRUST is one the trust policy accepts.
Trusted peers always; pinned ones under `tofu'; any but blocked or held
ones under `open'."
  (pcase meta-log-federation-trust-policy
    ('open (not (memq trust '(blocked conflict))))
    ('tofu (memq trust '(trusted pinned)))
    (_ (eq trust 'trusted))))

(defun meta-log-federation-direct--link-online-peers ()
  "Ask for a link to each trusted online peer without one."
  (let ((linked (mapcar (lambda (l) (plist-get l :peer-id))
                        (cl-remove-if-not
                         (lambda (l) (memq (plist-get l :state) '(up connecting)))
                         (meta-log-federation-peer-links)))))
    (dolist (p (meta-log-federation-peers))
      (when (and (eq (plist-get p :status) 'online)
                 (meta-log-federation-direct--accepted-p (plist-get p :trust))
                 (not (member (plist-get p :peer-id) linked)))
        (condition-case err
            (meta-log-federation--links-connect (plist-get p :peer-id))
          (error (meta-log-federation--log "direct link to %s: %s"
                                           (meta-log-federation--peer-label
                                            (plist-get p :peer-id))
                                           (error-message-string err))))))))

(defun meta-log-federation-direct--open (peer-id)
  "Open a direct link to PEER-ID.
Runs from `meta-log-federation-connect-peer-functions'."
  (cond
   ((not (meta-log-federation-direct-available-p))
    (message "meta-log-federation: this build has no direct links; %s stays on the broker (rebuild with `make module FEATURES=tls')"
             (meta-log-federation--peer-label peer-id)))
   (meta-log-federation-direct--running
    (meta-log-federation--links-connect peer-id))))

(defun meta-log-federation-peer-links ()
  "Return one plist per direct link.
Keys: :peer-id, :state (connecting, up, failed or closed), :path (host,
srflx, relay, tcp, or nil before a link was up), :rtt-ms (the last
ping's round trip, or nil), :bytes-in, :bytes-out, :error (why it last
failed, or nil)."
  (and meta-log-federation-direct--running
       (meta-log-federation--links-list)))

(defun meta-log-federation-direct-counters ()
  "Return the direct links' counters as an alist of (NAME . COUNT).
Refusals are counted here: bad-hello, bad-fingerprint, rate-limited,
glare, stale-session, malformed-signals, link-foreign, malformed-frames."
  (and (fboundp 'meta-log-federation--links-counters)
       (meta-log-federation--links-counters)))

;;;###autoload
(defun meta-log-federation-disconnect-peer (peer-id)
  "Close the direct link to PEER-ID; send its traffic through the broker.
The link is not retried until asked for again."
  (interactive (list (meta-log-federation--read-peer "Close the link to: ")))
  (unless meta-log-federation-direct--running
    (if (meta-log-federation-direct-available-p)
        (meta-log-federation--require-running)
      (meta-log-federation-direct--unavailable)))
  (meta-log-federation--links-close peer-id)
  (when (called-interactively-p 'interactive)
    (message "meta-log-federation: link to %s closed"
             (meta-log-federation--peer-label peer-id))))

(add-hook 'meta-log-federation-started-hook #'meta-log-federation-direct-start)
(add-hook 'meta-log-federation-stopping-hook #'meta-log-federation-direct-stop)
(add-hook 'meta-log-federation-connect-peer-functions #'meta-log-federation-direct--open)

(provide 'meta-log-federation-direct)

;;; meta-log-federation-direct.el ends here
