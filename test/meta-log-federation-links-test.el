;;; meta-log-federation-links-test.el --- canvasl:// and mqtt:// links  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;;; Commentary:

;; Link checking (hostile links refused, nothing visited or written),
;; opening a known share, asking a running peer for an unknown one,
;; broker links (confirmation required), and dispatch from Org and
;; `browse-url'.

;;; Code:

(require 'meta-log-federation-federation-test)
(require 'meta-log-federation-links)
(require 'org)
(require 'browse-url)

(defconst links-test-origin (make-string 64 ?a)
  "A well-formed peer id.")

(defun links-test-url (name &optional origin)
  "Return canvasl://ORIGIN/NAME (ORIGIN defaults to `links-test-origin')."
  (format "canvasl://%s/%s" (or origin links-test-origin) name))

(defun links-test-canvas (dir)
  "Write a small canvas in DIR; return its file name."
  (let ((file (expand-file-name (format "links-%d.canvasl" (random 1000000)) dir)))
    (with-temp-file file
      (insert "@version 1.0\n@schema canvasl\n{\"id\":\"a\",\"type\":\"text\",\"text\":\"alpha\"}\n"))
    file))

(defun links-test-tree (dir)
  "Return every file and directory under DIR, sorted."
  (sort (directory-files-recursively dir "" t) #'string<))

(defmacro links-test-recording (functions &rest body)
  "Run BODY with FUNCTIONS replaced by recorders; return the calls.
The calls are a list of (FUNCTION . ARGS), oldest first."
  (declare (indent 1) (debug t))
  (let ((calls (make-symbol "calls")))
    `(let ((,calls nil))
       (cl-letf ,(mapcar (lambda (f)
                           `((symbol-function ',f)
                             (lambda (&rest args) (push (cons ',f args) ,calls) nil)))
                         functions)
         ,@body)
       (nreverse ,calls))))

(defconst links-test-hostile-canvasl
  (list (links-test-url "../../x.canvasl")
        (links-test-url "../x.canvasl")
        (links-test-url "/etc/passwd.canvasl")
        (links-test-url "C:x.canvasl")
        (links-test-url "\\evil.canvasl")
        (links-test-url "%2e%2e%2fx.canvasl")
        (links-test-url "%2e%2e.canvasl")
        (links-test-url "a%2fb.canvasl")
        (links-test-url "x%00.canvasl")
        (links-test-url "x\n.canvasl")
        (links-test-url "x\0.canvasl")
        (links-test-url "x\u0085.canvasl")
        (links-test-url "x.doc")
        (links-test-url "x.el")
        (links-test-url ".canvasl")
        (links-test-url ".hidden.canvasl")
        (links-test-url "")
        (links-test-url "sub/x.canvasl")
        (links-test-url (concat (make-string 220 ?x) ".canvasl"))
        (links-test-url "x.canvasl" (make-string 64 ?A))
        (links-test-url "x.canvasl" (make-string 63 ?a))
        (links-test-url "x.canvasl" (make-string 65 ?a))
        (links-test-url "x.canvasl" (concat (make-string 63 ?a) "g"))
        (links-test-url "x.canvasl" "..")
        (concat "canvasl://" links-test-origin)
        "canvasl:/x.canvasl"
        "http://example.com/x.canvasl"
        "file:///etc/passwd"
        (concat "canvasl://" links-test-origin "/x.canvasl\n(shell-command \"touch /tmp/pwned\")"))
  "Links that must be refused.")

(ert-deftest links::canvasl-url-well-formed-links-are-accepted ()
  (should (equal (meta-log-federation--parse-canvasl-url (links-test-url "board.canvasl"))
                 (cons links-test-origin "board.canvasl")))
  (should (equal (meta-log-federation--parse-canvasl-url (links-test-url "log.jsonl"))
                 (cons links-test-origin "log.jsonl")))
  (should (equal (cdr (meta-log-federation--parse-canvasl-url
                       (links-test-url "my board é.canvasl")))
                 "my board é.canvasl"))
  (should (equal (cdr (meta-log-federation--parse-canvasl-url
                       (links-test-url "a%20b.canvasl")))
                 "a%20b.canvasl"))
  ;; The longest name the engine allows: 223 bytes.
  (let ((name (concat (make-string (- 223 8) ?x) ".canvasl")))
    (should (equal (cdr (meta-log-federation--parse-canvasl-url (links-test-url name))) name))
    (should-error (meta-log-federation--parse-canvasl-url (links-test-url (concat "x" name)))
                  :type 'meta-log-federation-error)))

(ert-deftest links::hostile-canvasl-urls-are-refused-and-nothing-is-touched ()
  (let* ((dir (meta-log-federation-test-peer-dir "hostile"))
         (default-directory (file-name-as-directory dir))
         (before (links-test-tree dir)))
    (dolist (url links-test-hostile-canvasl)
      (let* ((calls
              (links-test-recording (find-file find-file-noselect pop-to-buffer
                                               meta-log-federation-connect-to-peer
                                               meta-log-federation-init
                                               write-region)
                (let ((err (should-error (meta-log-federation-open-canvasl-url url)
                                         :type 'meta-log-federation-error)))
                  ;; The message says what is wrong.
                  (should (string-match-p "Refused link .*: \\(the\\|a share\\|it\\|once\\)"
                                          (error-message-string err)))
                  (should-not (string-search "\n" (error-message-string err)))))))
        (should-not calls)))
    (should (equal (links-test-tree dir) before))
    (should-not (file-exists-p (expand-file-name "x.canvasl" dir)))))

(ert-deftest links::refusal-messages-say-what-is-wrong ()
  (cl-flet ((msg (url) (error-message-string
                        (should-error (meta-log-federation--parse-canvasl-url url)
                                      :type 'meta-log-federation-error))))
    (should (string-match-p "path separator" (msg (links-test-url "../../x.canvasl"))))
    (should (string-match-p "absolute" (msg (links-test-url "/etc/x.canvasl"))))
    (should (string-match-p "escapes.*separator" (msg (links-test-url "%2e%2e%2fx.canvasl"))))
    (should (string-match-p "control" (msg (links-test-url "x\n.canvasl"))))
    (should (string-match-p "must end with" (msg (links-test-url "x.doc"))))
    (should (string-match-p "peer id" (msg (links-test-url "x.canvasl" "bob"))))
    (should (string-match-p "bytes long" (msg (links-test-url (concat (make-string 300 ?x)
                                                                      ".canvasl")))))
    (should (string-match-p "starts with '\\.'" (msg (links-test-url ".x.canvasl"))))))

(ert-deftest links::canvasl-url-needs-federation ()
  (cl-letf (((symbol-function 'meta-log-federation-running-p) #'ignore))
    (let ((err (should-error (meta-log-federation-open-canvasl-url (links-test-url "b.canvasl"))
                             :type 'user-error)))
      (should (string-search "meta-log-federation-init" (error-message-string err))))))

(ert-deftest links::remote-share-outside-the-sync-directory-is-not-opened ()
  (let* ((dir (meta-log-federation-test-peer-dir "links-remote"))
         (meta-log-federation-sync-directory (expand-file-name "sync/" dir))
         (inside (expand-file-name (format "%s/in.canvasl" links-test-origin)
                                   meta-log-federation-sync-directory))
         (outside (expand-file-name "out.canvasl" dir))
         (shares (list (list :url (links-test-url "in.canvasl") :path inside :local nil :active t)
                       (list :url (links-test-url "out.canvasl") :path outside :local nil
                             :active t))))
    (make-directory (file-name-directory inside) t)
    (write-region "@version 1.0\n" nil inside)
    (write-region "@version 1.0\n" nil outside)
    (cl-letf (((symbol-function 'meta-log-federation-running-p) (lambda () t))
              ((symbol-function 'meta-log-federation-sync-running-p) (lambda () t))
              ((symbol-function 'meta-log-federation-shared-canvasl-files)
               (lambda (&optional _details) shares)))
      (let ((buffer (meta-log-federation-open-canvasl-url (links-test-url "in.canvasl"))))
        (unwind-protect
            (should (equal (buffer-file-name buffer) inside))
          (kill-buffer buffer)))
      (let ((calls (links-test-recording (find-file find-file-noselect)
                     (should-error (meta-log-federation-open-canvasl-url
                                    (links-test-url "out.canvasl"))
                                   :type 'meta-log-federation-error))))
        (should-not calls)))))

(ert-deftest links::known-share-opens-its-file ()
  (meta-log-federation-test-with-federation
    (let* ((file (links-test-canvas (meta-log-federation-test-peer-dir "links-own")))
           (url (meta-log-federation-share-canvasl file))
           (buffer nil))
      (unwind-protect
          (progn
            (setq buffer (meta-log-federation-open-canvasl-url url))
            (should (bufferp buffer))
            (should (equal (buffer-file-name buffer) file))
            (should (eq (current-buffer) buffer)))
        (when (buffer-live-p buffer) (kill-buffer buffer))))))

(ert-deftest links::unknown-share-of-a-running-peer-is-asked-for-and-opened-on-arrival ()
  (meta-log-federation-test-with-federation
    (let* ((bob (meta-log-federation-test-start-peer "bob"))
           (bob-id (process-get bob 'peer-id))
           (url (links-test-url "wanted.canvasl" bob-id))
           (other-url (links-test-url "other.canvasl" bob-id))
           (sync-dir (meta-log-federation--sync-dir))
           (file (expand-file-name (format "%s/wanted.canvasl" bob-id) sync-dir))
           (other (expand-file-name (format "%s/other.canvasl" bob-id) sync-dir))
           (arrived nil)
           (meta-log-federation-canvasl-updated-functions
            (list (lambda (_file url _created) (push url arrived))))
           (before nil)
           (meta-log-federation-links--pending nil))
      (should (meta-log-federation-wait-until
               (lambda () (meta-log-federation-peer bob-id)) 20))
      (setq before (and (file-directory-p sync-dir) (links-test-tree sync-dir)))
      ;; Bob has no such share yet: the link asks him (for real) and waits.
      (let ((calls (links-test-recording (find-file)
                     (should-not (meta-log-federation-open-canvasl-url url)))))
        (should-not calls))
      ;; Nothing written; the one-shot hook waits for that share.
      (should (equal (and (file-directory-p sync-dir) (links-test-tree sync-dir)) before))
      (should (assoc url meta-log-federation-links--pending))
      (should (memq #'meta-log-federation-links--arrived
                    meta-log-federation-canvasl-updated-functions))
      (unwind-protect
          (progn
            ;; A file outside the sync directory is never opened, even for that URL.
            (let ((calls (links-test-recording (find-file-noselect pop-to-buffer)
                           (meta-log-federation-links--arrived
                            (expand-file-name "wanted.canvasl" temporary-file-directory)
                            url t))))
              (should-not calls))
            (setq meta-log-federation-links--pending nil)
            (meta-log-federation-links--wait-for url)
            ;; Bob shares another canvas: it arrives here and is not opened.
            (meta-log-federation-send-peer-message bob-id "share:other.canvasl")
            (should (meta-log-federation-wait-until (lambda () (member other-url arrived)) 20))
            (should (file-exists-p other))
            (should-not (find-buffer-visiting other))
            (should (assoc url meta-log-federation-links--pending))
            ;; Bob shares the one asked for: it arrives and opens, once.
            (meta-log-federation-send-peer-message bob-id "share:wanted.canvasl")
            (should (meta-log-federation-wait-until (lambda () (find-buffer-visiting file)) 20))
            (should (member url arrived))
            (with-current-buffer (find-buffer-visiting file)
              (should (string-search "wanted.canvasl from bob" (buffer-string))))
            (should-not meta-log-federation-links--pending)
            (should-not (memq #'meta-log-federation-links--arrived
                              meta-log-federation-canvasl-updated-functions)))
        (dolist (f (list file other))
          (let ((b (find-buffer-visiting f))) (when b (kill-buffer b))))
        (meta-log-federation-links--forget-pending)))))

(ert-deftest links::own-origin-unknown-share-is-a-user-error ()
  (meta-log-federation-test-with-federation
    (let ((me (plist-get (meta-log-federation-get-local-peer-identity) :peer-id))
          (meta-log-federation-links--pending nil))
      (should-error (meta-log-federation-open-canvasl-url (links-test-url "nope.canvasl" me))
                    :type 'user-error)
      (should-not meta-log-federation-links--pending))))

(ert-deftest links::mqtt-url-parsing ()
  (should (equal (meta-log-federation--parse-mqtt-url "mqtt://broker.example:1883")
                 '(:user nil :host "broker.example" :port 1883 :url "mqtt://broker.example:1883")))
  (should (equal (plist-get (meta-log-federation--parse-mqtt-url "mqtt://127.0.0.1:1883/") :url)
                 "mqtt://127.0.0.1:1883"))
  (should (equal (plist-get (meta-log-federation--parse-mqtt-url "mqtt://alice@h") :url)
                 "mqtt://alice@h:1883"))
  (should (equal (plist-get (meta-log-federation--parse-mqtt-url "MQTT://[::1]:1884") :url)
                 "mqtt://[::1]:1884"))
  ;; Every broker URL the module accepts is a broker link, WebSockets included.
  (should (equal (plist-get (meta-log-federation--parse-mqtt-url "mqtts://h") :url)
                 "mqtts://h:8883"))
  (should (equal (plist-get (meta-log-federation--parse-mqtt-url "wss://bob@h.example/mqtt") :url)
                 "wss://bob@h.example:443/mqtt"))
  (should (equal (plist-get (meta-log-federation--parse-mqtt-url "ws://h:9001") :url)
                 "ws://h:9001/"))
  (dolist (url '("http://h:1883" "tcp://h:1883" "mqtt:h" "mqtt://"
                 "mqtt://h:1883/topic" "mqtt://h:1883?x=1" "mqtt://h#frag"
                 "mqtt://h:0" "mqtt://h:65536" "mqtt://h:12a" "mqtt://h:-1"
                 "mqtt://user:secret@h:1883" "wss://user:secret@h" "mqtt://a@b@h"
                 "mqtt://h\n:1883" "mqtt://h\0" "mqtt://-h" "mqtt://h_x" "mqtt://h..x"
                 "mqtt://h/../x" "mqtt://h:1883 ;rm -rf" "mqtt://[zz]:1" 42))
    (let ((err (should-error (meta-log-federation--parse-mqtt-url url)
                             :type 'meta-log-federation-error)))
      (should (string-prefix-p "Refused link " (cadr err)))
      (should-not (string-search "secret" (cadr err))))))

(ert-deftest links::rules-come-from-the-module ()
  ;; One source for each rule: the Elisp answers are the module's.
  (should (equal (meta-log-federation-links--name-problem "a/b.canvasl")
                 (meta-log-federation--share-name-problem "a/b.canvasl")))
  (should-not (meta-log-federation--share-name-problem "board.canvasl"))
  (should (string-match-p "must end with" (meta-log-federation--share-name-problem "x.el")))
  (should (meta-log-federation--peer-id-p links-test-origin))
  (dolist (bad (list (upcase links-test-origin) (substring links-test-origin 1) nil 42
                     (concat links-test-origin "a")))
    (should-not (meta-log-federation--peer-id-p bad)))
  (should (equal (meta-log-federation--share-url links-test-origin "b.canvasl")
                 (links-test-url "b.canvasl")))
  (should-error (meta-log-federation--share-url "bob" "b.canvasl")
                :type 'meta-log-federation-sync-error)
  (should (equal (meta-log-federation--share-url-parse (links-test-url "b.canvasl"))
                 (cons links-test-origin "b.canvasl")))
  (should (equal (meta-log-federation--redact-url "mqtt://u:secret@h")
                 "mqtt://u:***@h:1883"))
  (should (equal (meta-log-federation--redact-url "gopher://u:secret@h/x")
                 "gopher://u:***@h/x"))
  (should (equal (meta-log-federation--topic "lab/canvasl" 'messages links-test-origin)
                 (format "lab/canvasl/peers/%s/messages" links-test-origin)))
  (should (equal (meta-log-federation--topic "canvasl" 'sync nil) "canvasl/sync"))
  (should-error (meta-log-federation--topic "canvasl" 'messages "bob")
                :type 'meta-log-federation-unknown-peer)
  (should-error (meta-log-federation--topic "a/#" 'sync nil) :type 'meta-log-federation-bad-topic))

(ert-deftest links::mqtt-url-asks-before-starting ()
  (cl-letf (((symbol-function 'meta-log-federation-running-p) #'ignore))
    ;; Answered no: nothing started.
    (let* ((asked nil)
           (calls (cl-letf (((symbol-function 'y-or-n-p)
                             (lambda (prompt) (push prompt asked) nil)))
                    (links-test-recording (meta-log-federation-init)
                      (should-not (meta-log-federation-open-mqtt-url "mqtt://h.example:1883"))))))
      (should-not calls)
      (should (equal asked '("Start federation with broker mqtt://h.example:1883? "))))
    ;; Answered yes: started with the rebuilt link.
    (let ((calls (cl-letf (((symbol-function 'y-or-n-p) (lambda (_) t)))
                   (links-test-recording (meta-log-federation-init)
                     (meta-log-federation-open-mqtt-url "mqtt://h.example:1883/")))))
      (should (equal calls '((meta-log-federation-init nil "mqtt://h.example:1883")))))
    ;; A hostile link is refused before anything is asked.
    (let ((calls (links-test-recording (y-or-n-p meta-log-federation-init)
                   (should-error (meta-log-federation-open-mqtt-url "mqtt://h:1883/x?y")
                                 :type 'meta-log-federation-error))))
      (should-not calls))))

(ert-deftest links::mqtt-url-starts-federation-for-real-and-not-twice ()
  (meta-log-federation-test-ensure-broker)
  (let* ((dir (meta-log-federation-test-peer-dir "links-mqtt"))
         (meta-log-federation-identity-file (expand-file-name "identity.org" dir))
         (meta-log-federation-trust-file (expand-file-name "trust.json" dir))
         (meta-log-federation-blackboard-file (expand-file-name "blackboard.org" dir))
         (meta-log-federation-sync-directory (expand-file-name "sync/" dir))
         (meta-log-federation-sync-state-directory (expand-file-name "sync-state/" dir))
         (meta-log-federation-display-name (format "links-%d" (random 1000000)))
         (meta-log-federation-identity nil)
         (meta-log-federation-verbose nil)
         (process-environment (cons "META_LOG_FEDERATION_BLACKBOARD" process-environment)))
    (unwind-protect
        (cl-letf (((symbol-function 'y-or-n-p) (lambda (_) t)))
          (should (eq t (meta-log-federation-open-mqtt-url (meta-log-federation-test-broker-url))))
          (should (meta-log-federation-running-p))
          (should (meta-log-federation-wait-until #'meta-log-federation-connected-p 10))
          ;; Already running: nothing asked, nothing changed.
          (let ((calls (links-test-recording (y-or-n-p meta-log-federation-init)
                         (should-not (meta-log-federation-open-mqtt-url "mqtt://other:1883")))))
            (should-not calls)))
      (meta-log-federation-shutdown))))

(ert-deftest links::org-links-reach-the-handlers ()
  (let ((url (links-test-url "b.canvasl")))
    (let ((calls (links-test-recording (meta-log-federation-open-canvasl-url
                                        meta-log-federation-open-mqtt-url)
                   (with-temp-buffer
                     (org-mode)
                     (insert (format "See [[%s][the board]] and [[mqtt://h.example:1883]].\n"
                                     url)
                             (format "Plain: %s\n" url))
                     (goto-char (point-min))
                     (search-forward "the board")
                     (org-open-at-point)
                     (search-forward "mqtt://h")
                     (org-open-at-point)
                     (search-forward "Plain: canvasl")
                     (org-open-at-point)))))
      (should (equal calls
                     `((meta-log-federation-open-canvasl-url ,url)
                       (meta-log-federation-open-mqtt-url "mqtt://h.example:1883")
                       (meta-log-federation-open-canvasl-url ,url)))))))

(ert-deftest links::browse-url-reaches-the-handlers ()
  (let ((url (links-test-url "b.canvasl")))
    (let ((calls (links-test-recording (meta-log-federation-open-canvasl-url
                                        meta-log-federation-open-mqtt-url
                                        browse-url-default-browser)
                   (let ((browse-url-browser-function #'browse-url-default-browser))
                     (browse-url url)
                     (browse-url "mqtt://h.example:1883")))))
      (should (equal calls `((meta-log-federation-open-canvasl-url ,url)
                             (meta-log-federation-open-mqtt-url "mqtt://h.example:1883")))))))

(ert-deftest links::uninstall-and-install-again ()
  (unwind-protect
      (progn
        (meta-log-federation-links-uninstall)
        (should-not (rassq 'meta-log-federation-links-browse-canvasl browse-url-handlers))
        (should-not (assoc "canvasl" org-link-parameters))
        (meta-log-federation-links-install)
        (should (rassq 'meta-log-federation-links-browse-canvasl browse-url-handlers))
        (should (rassq 'meta-log-federation-links-browse-mqtt browse-url-handlers))
        (should (eq (plist-get (cdr (assoc "canvasl" org-link-parameters)) :follow)
                    'meta-log-federation-links-org-follow-canvasl)))
    (meta-log-federation-links-install)))

(provide 'meta-log-federation-links-test)
;;; meta-log-federation-links-test.el ends here
