;;; meta-log-federation-controls-test.el --- The person's controls: conflicts, counts, logins  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;;; Commentary:

;; A held key (TOFU name conflict) in the peers buffer and resolved by
;; the trust and block commands; peer messages and sync events counted
;; apart and our own echoes not counted as drops; a broker password from
;; auth-source through an mqtt:// link, and a refused one that stops
;; retrying.  All against the run's private mosquitto (and, for the
;; logins, a second one that needs a password), with real signed events.

;;; Code:

(require 'meta-log-federation-test-helpers)
(require 'meta-log-federation-federation-test)
(require 'meta-log-federation-auth)
(require 'json)

(defun meta-log-federation-test-presence (identity name)
  "Return a signed online presence of IDENTITY announcing NAME."
  (meta-log-federation-sign-event
   identity 20770
   (json-encode
    `((peer_id . ,(meta-log-federation-identity-peer-id identity))
      (name . ,name) (software . "test/1") (protocol . ,(meta-log-federation--protocol-version))
      (capabilities . []) (status . "online")
      (since . ,(truncate (float-time)))))
   `(("v" ,(meta-log-federation--protocol-version)) ("t" "announce"))))

(defun meta-log-federation-test-new-identity ()
  "Return a fresh identity."
  (meta-log-federation-identity-from-mnemonic (meta-log-federation-mnemonic-generate)))

(defun meta-log-federation-test-trust-state (peer-id)
  "Return the trust store's state of PEER-ID, or nil."
  (plist-get (cl-find peer-id (meta-log-federation-trust-entries)
                      :key (lambda (e) (plist-get e :peer-id)) :test #'equal)
             :state))

(defun meta-log-federation-test-row (peer-id)
  "Return the peers buffer's row of PEER-ID (a vector), or nil."
  (cadr (assoc peer-id (meta-log-federation--peer-list-entries))))

(defun meta-log-federation-test-note (row)
  "Return the Note cell of ROW, a peers buffer row: its last column."
  (aref row (1- (length row))))

(defmacro meta-log-federation-test-choosing (choose &rest body)
  "Run BODY answering `completing-read' with (funcall CHOOSE COLLECTION).
The collection offered and its annotations are in
`meta-log-federation-test-offered' afterwards: (CANDIDATE . ANNOTATION)."
  (declare (indent 1) (debug t))
  `(cl-letf (((symbol-function 'completing-read)
              (lambda (_prompt collection &rest _)
                (let* ((md (completion-metadata "" collection nil))
                       (annotate (completion-metadata-get md 'annotation-function)))
                  (setq meta-log-federation-test-offered
                        (mapcar (lambda (c) (cons c (and annotate (funcall annotate c))))
                                (all-completions "" collection))))
                (funcall ,choose meta-log-federation-test-offered))))
     ,@body))

(defvar meta-log-federation-test-offered nil
  "What the last faked `completing-read' offered: (CANDIDATE . ANNOTATION).")

(defun meta-log-federation-test-offered-for (peer-id)
  "Return the (CANDIDATE . ANNOTATION) offered for PEER-ID."
  (cl-find-if (lambda (c) (string-search (meta-log-federation--short-id peer-id) (car c)))
              meta-log-federation-test-offered))

(ert-deftest controls::a-conflicting-key-has-its-own-row-and-the-commands-resolve-it ()
  (meta-log-federation-test-with-federation
    (let* ((name (format "alice-%d" (random 1000000)))
           (old (meta-log-federation-test-new-identity))
           (old-id (meta-log-federation-identity-peer-id old))
           (new (meta-log-federation-test-new-identity))
           (new-id (meta-log-federation-identity-peer-id new))
           (other (meta-log-federation-test-new-identity))
           (other-id (meta-log-federation-identity-peer-id other))
           (warnings nil))
      (cl-letf (((symbol-function 'display-warning)
                 (lambda (_type message &rest _) (push message warnings))))
        (meta-log-federation-mqtt-publish "canvasl/peers/announce"
                                          (meta-log-federation-test-presence old name) 1)
        (should (meta-log-federation-wait-until
                 (lambda () (meta-log-federation-peer old-id)) 10))
        ;; The same name from a new key: held, and warned about.
        (meta-log-federation-mqtt-publish "canvasl/peers/announce"
                                          (meta-log-federation-test-presence new name) 1)
        ;; The key is held by the module's session first; the warning follows
        ;; as an event: wait for both.
        (should (meta-log-federation-wait-until
                 (lambda () (and (eq (meta-log-federation-test-trust-state new-id) 'conflict)
                                 (cl-find-if (lambda (m) (string-search new-id m)) warnings)))
                 10)))
      (should-not (meta-log-federation-peer new-id))
      ;; The warning names the command and the key to choose.
      (let ((w (cl-find-if (lambda (m) (string-search new-id m)) warnings)))
        (should w)
        (should (string-search "meta-log-federation-trust-peer" w))
        (should (string-search "meta-log-federation-block-peer" w))
        (should (string-search (meta-log-federation--short-id new-id) w)))
      ;; Its own row: state conflict, the name it claims, the key it would replace.
      (let ((row (meta-log-federation-test-row new-id)))
        (should row)
        (should (equal (aref row 0) name))
        (should (equal (substring-no-properties (aref row 4)) "conflict"))
        (should (string-search (meta-log-federation--short-id old-id) (meta-log-federation-test-note row))))
      ;; The row is in the buffer a person opens.
      (with-current-buffer (meta-log-federation-list-peers)
        (should (string-search (meta-log-federation--short-id new-id) (buffer-string))))
      ;; A third key, blocked before it ever spoke, is offered too.
      (meta-log-federation-block-peer other-id)
      ;; Trust: the command offers the held key with its state; choosing it trusts it.
      (meta-log-federation-test-choosing
          (lambda (offered)
            (car (cl-find-if (lambda (c) (string-search (meta-log-federation--short-id new-id)
                                                        (car c)))
                             offered)))
        (call-interactively #'meta-log-federation-trust-peer))
      (let ((offered (meta-log-federation-test-offered-for new-id)))
        (should offered)
        (should (string-search name (car offered)))
        (should (string-search "conflict" (cdr offered))))
      (should (meta-log-federation-test-offered-for old-id))
      (should (string-search "blocked" (cdr (meta-log-federation-test-offered-for other-id))))
      (should (eq (meta-log-federation-test-trust-state new-id) 'trusted))
      ;; Trusting the held key resolved the conflict: the automatic pin of
      ;; the old key, whose name it claimed, is forgotten.
      (should-not (meta-log-federation-test-trust-state old-id))
      ;; Now its presence is accepted and its row is an ordinary one.
      (meta-log-federation-mqtt-publish "canvasl/peers/announce"
                                        (meta-log-federation-test-presence new name) 1)
      (should (meta-log-federation-wait-until
               (lambda () (meta-log-federation-peer new-id)) 10))
      (should (equal (meta-log-federation-test-note (meta-log-federation-test-row new-id)) ""))
      ;; A pasted full id is accepted as well (the old `[No match]').
      (meta-log-federation-test-choosing (lambda (_) other-id)
        (call-interactively #'meta-log-federation-untrust-peer))
      (should-not (meta-log-federation-test-trust-state other-id))
      ;; Block by command, through the same completion.
      (meta-log-federation-test-choosing
          (lambda (offered)
            (car (cl-find-if (lambda (c) (string-search (meta-log-federation--short-id old-id)
                                                        (car c)))
                             offered)))
        (call-interactively #'meta-log-federation-block-peer))
      (should (eq (meta-log-federation-test-trust-state old-id) 'blocked))
      ;; A name that is no key is refused with a clear error.
      (meta-log-federation-test-choosing (lambda (_) "nobody")
        (should-error (call-interactively #'meta-log-federation-trust-peer)
                      :type 'user-error)))))

(ert-deftest controls::in-and-out-count-peer-messages-and-echoes-are-not-drops ()
  (meta-log-federation-test-with-federation
    (let* ((got nil)
           (meta-log-federation-peer-message-functions
            (list (lambda (from text) (push (cons from text) got))))
           (bob (meta-log-federation-test-start-peer "bob"))
           (bob-id (process-get bob 'peer-id))
           (carol (meta-log-federation-test-new-identity))
           (carol-id (meta-log-federation-identity-peer-id carol)))
      (should (meta-log-federation-wait-until
               (lambda () (meta-log-federation-peer bob-id)) 20))
      ;; One message each way.
      (meta-log-federation-send-peer-message bob-id "echo:one")
      (should (meta-log-federation-wait-until (lambda () (assoc bob-id got)) 20))
      (let ((row (meta-log-federation-test-row bob-id)))
        (should (equal (aref row 5) "1"))
        (should (equal (aref row 6) "1")))
      ;; Carol sends only sync traffic: none of it is a message.
      (meta-log-federation-mqtt-publish "canvasl/peers/announce"
                                        (meta-log-federation-test-presence carol "carol") 1)
      (dotimes (i 2)
        (meta-log-federation-mqtt-publish
         "canvasl/sync"
         (meta-log-federation-sign-event carol 4771 (format "{\"n\":%d}" i)
                                         `(("v" ,(meta-log-federation--protocol-version)) ("t" "sync")))
         1))
      (should (meta-log-federation-wait-until
               (lambda () (equal (plist-get (meta-log-federation-peer carol-id) :sync-in) 2))
               10))
      (let ((row (meta-log-federation-test-row carol-id)))
        (should (equal (aref row 5) "0"))
        (should (equal (aref row 7) "2")))
      ;; Our own presence came back from the broker: an echo, not a drop.
      (let ((c (meta-log-federation-counters)))
        (should (> (plist-get c :echoes) 0))
        (should-not (assoc "own-event" (plist-get c :drops)))
        (should (= (plist-get c :dropped)
                   (apply #'+ (mapcar #'cdr (plist-get c :drops)))))))))

;;;; Commands that say what they did

(ert-deftest controls::catch-up-and-refusals-say-what-they-did ()
  (meta-log-federation-test-with-federation
    (let* ((said nil)
           (file (expand-file-name "board.canvasl" (make-temp-file "share-" t))))
      (copy-file (expand-file-name "../examples/demo.canvasl"
                                   (file-name-directory
                                    (locate-library "meta-log-federation-test-helpers")))
                 file)
      (let ((url (meta-log-federation-share-canvasl file)))
        (cl-letf (((symbol-function 'called-interactively-p) (lambda (&rest _) t))
                  ((symbol-function 'message)
                   (lambda (format-string &rest args)
                     (push (apply #'format format-string args) said))))
          (should (> (call-interactively #'meta-log-federation-canvasl-catch-up) 0))
          (let ((line (car said)))
            ;; Whom: nobody else is online in this test.
            (should (string-search "asked every peer (none is online now)" line))
            (should (string-search "every shared file (1)" line))
            (should (string-match-p "[1-9][0-9]* sync requests? sent" line)))
          ;; One share, by its URL.
          (meta-log-federation-canvasl-catch-up url)
          (should (string-search url (car said)))
          ;; Refusals: a buffer listing every reason.
          (let ((refusals (call-interactively #'meta-log-federation-sync-refusals))
                (buffer (get-buffer meta-log-federation--sync-refusals-buffer)))
            (should buffer)
            (with-current-buffer buffer
              (dolist (r refusals)
                (should (string-search (format "%s" (car r)) (buffer-string))))
              (should (string-search "refused" (buffer-string))))))))))

;;;; Broker passwords from auth-source

(defun meta-log-federation-test-password-broker ()
  "Start a mosquitto that needs user `alice', password `s3cret'.
Return (PROCESS . PORT)."
  (let* ((dir meta-log-federation-test-directory)
         (port (meta-log-federation-test-free-port))
         (passwd (expand-file-name "mosquitto.passwd" dir))
         (conf (expand-file-name "mosquitto-auth.conf" dir)))
    (with-temp-buffer
      (unless (zerop (call-process "mosquitto_passwd" nil t nil "-c" "-b" passwd "alice" "s3cret"))
        (error "Mosquitto_passwd failed: %s" (buffer-string))))
    (set-file-modes passwd #o644)
    (with-temp-file conf
      (insert (format "listener %d 127.0.0.1\nallow_anonymous false\npassword_file %s\npersistence false\n"
                      port passwd)))
    (set-file-modes conf #o644)
    (let ((proc (make-process :name "test-mosquitto-auth"
                              :buffer (get-buffer-create " *test-mosquitto-auth*")
                              :command (list (meta-log-federation-test-mosquitto) "-c" conf)
                              :noquery t)))
      (unless (meta-log-federation-wait-until
               (lambda () (meta-log-federation-test-port-open-p port)) 10)
        (error "Password mosquitto did not start: %s"
               (with-current-buffer " *test-mosquitto-auth*" (buffer-string))))
      (cons proc port))))

(defmacro meta-log-federation-test-with-authinfo (lines &rest body)
  "Run BODY with a scratch HOME whose ~/.authinfo holds LINES."
  (declare (indent 1) (debug t))
  `(let* ((home (make-temp-file "home-" t))
          (process-environment (cons (concat "HOME=" home) process-environment))
          (authinfo (expand-file-name ".authinfo" home))
          (auth-sources (list authinfo)))
     (with-temp-file authinfo (insert (mapconcat #'identity ,lines "\n") "\n"))
     (auth-source-forget-all-cached)
     (unwind-protect (progn ,@body)
       (auth-source-forget-all-cached)
       (delete-directory home t))))

(ert-deftest controls::a-link-logs-in-with-the-password-from-auth-source ()
  (unless (executable-find "mosquitto_passwd")
    (ert-skip "mosquitto_passwd is not installed (apt-get install mosquitto)"))
  (let* ((broker (meta-log-federation-test-password-broker))
         (port (cdr broker))
         (link (format "mqtt://alice@127.0.0.1:%d" port))
         (dir (meta-log-federation-test-peer-dir "auth"))
         (meta-log-federation-identity-file (expand-file-name "identity.org" dir))
         (meta-log-federation-trust-file (expand-file-name "trust.json" dir))
         (meta-log-federation-sync-directory (expand-file-name "sync/" dir))
         (meta-log-federation-sync-state-directory (expand-file-name "sync-state/" dir))
         (meta-log-federation-blackboard-file (expand-file-name "blackboard.org" dir))
         (meta-log-federation-identity nil)
         (meta-log-federation-verbose nil)
         (errors nil)
         (meta-log-federation-error-functions
          (cons (lambda (context message) (push (cons context message) errors))
                meta-log-federation-error-functions)))
    (unwind-protect
        (progn
          ;; The right password, found by host, port and user.
          (meta-log-federation-test-with-authinfo
              (list (format "machine 127.0.0.1 port %d login alice password s3cret" port)
                    (format "machine 127.0.0.1 port %d login bob password other" port))
            (cl-letf (((symbol-function 'y-or-n-p) (lambda (&rest _) t)))
              (browse-url link))
            (should (meta-log-federation-wait-until #'meta-log-federation-connected-p 10))
            ;; The connection's event names the broker, password masked.
            (should (meta-log-federation-wait-until
                     (lambda () (equal meta-log-federation-mqtt-broker
                                       (format "mqtt://alice:***@127.0.0.1:%d" port)))
                     10))
            (meta-log-federation-shutdown))
          (should-not (assoc "auth" errors))
          ;; A wrong password: one clear error, then no more attempts.
          (meta-log-federation-test-with-authinfo
              (list (format "machine 127.0.0.1 port %d login alice password wrong" port))
            (let ((warnings nil))
              (cl-letf (((symbol-function 'display-warning)
                         (lambda (_type message &rest _) (push message warnings))))
                (meta-log-federation-init nil link)
                (should (meta-log-federation-wait-until (lambda () (assoc "auth" errors)) 10))
                (let ((connects (plist-get (meta-log-federation-stats) :connects)))
                  ;; Several backoff periods: a retrying client would log again.
                  (meta-log-federation-wait-until #'ignore 3)
                  (should (= 1 (cl-count "auth" errors :key #'car :test #'equal)))
                  (should-not (cl-find "connect" errors :key #'car :test #'equal))
                  (should (equal connects (plist-get (meta-log-federation-stats) :connects))))
                (should-not (meta-log-federation-connected-p))
                (let ((w (cl-find-if (lambda (m) (string-search "refused user alice" m)) warnings)))
                  (should w)
                  (should (string-search "auth-sources" w))
                  (should (string-search (format "port %d" port) w)))))
            (meta-log-federation-shutdown)
            ;; Doing what the warning says (fix the entry, start again) works:
            ;; the refused password was not kept in auth-source's cache.
            (with-temp-file authinfo
              (insert (format "machine 127.0.0.1 port %d login alice password s3cret\n" port)))
            (meta-log-federation-init nil link)
            (should (meta-log-federation-wait-until #'meta-log-federation-connected-p 10))
            (meta-log-federation-shutdown)))
      (meta-log-federation-shutdown)
      (delete-process (car broker)))))

(ert-deftest controls::an-auth-source-password-typed-is-saved-after-the-broker-accepts-it ()
  (unless (executable-find "mosquitto_passwd")
    (ert-skip "mosquitto_passwd is not installed (apt-get install mosquitto)"))
  (let* ((broker (meta-log-federation-test-password-broker))
         (port (cdr broker))
         (saved nil)
         (meta-log-federation-verbose nil))
    (unwind-protect
        (meta-log-federation-test-with-authinfo '()
          ;; What auth-source gives back for a password it just asked for.
          (cl-letf (((symbol-function 'auth-source-search)
                     (lambda (&rest spec)
                       (should (equal (plist-get spec :user) "alice"))
                       (should (equal (plist-get spec :port) (number-to-string port)))
                       (list (list :user "alice" :secret (lambda () "s3cret")
                                   :save-function (lambda () (setq saved t)))))))
            (let ((url (meta-log-federation-auth-broker-url
                        (format "mqtt://alice@127.0.0.1:%d" port))))
              (should (string-match-p ":s3cret@" url))
              (should-not saved)
              (meta-log-federation-mqtt-connect url)
              (should (meta-log-federation-wait-until #'meta-log-federation-mqtt-connected-p 10))
              (should (meta-log-federation-wait-until (lambda () saved) 5)))))
      (meta-log-federation-shutdown)
      (delete-process (car broker)))))

(provide 'meta-log-federation-controls-test)
;;; meta-log-federation-controls-test.el ends here
